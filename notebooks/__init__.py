"""notebooks package."""
