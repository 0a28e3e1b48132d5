"""The API's routers: ``health`` (open), ``experiments`` and ``compare`` (behind the auth check)."""
