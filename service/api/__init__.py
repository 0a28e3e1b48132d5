"""The controller's HTTP API: ``app`` builds it, ``routes`` hold the routers, ``deps`` what they
depend on, ``models`` the response bodies, ``responses`` the errors they declare, ``openapi`` the
schema, ``methods`` OPTIONS and 405. The submit use case itself is ``service.submit``.

``new_variants`` is re-exported for the callers that plan trials the way a POST does.
"""

from service.api.app import create_app, create_app_from_env
from service.submit import new_variants

__all__ = ["create_app", "create_app_from_env", "new_variants"]
