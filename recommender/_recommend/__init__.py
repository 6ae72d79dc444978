"""Next-item recommendation internals: click matrices, baselines, the learnloop ranker, OULAD evaluation."""
