"""At-risk interventions: score active enrollments with the champion risk model, raise explained alerts with
suggested actions, and export staff outcomes as labels (public surface: ``api.py``)."""
