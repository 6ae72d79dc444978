"""grading_nlp package."""
