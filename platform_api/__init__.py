"""platform_api package."""
