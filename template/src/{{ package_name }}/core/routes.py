"""The path template of the route a request matched (/api/v1/users/{user_id}): logs, metrics."""

from collections.abc import Iterable

from starlette.types import Scope

# Route objects → their full path template. FastAPI keeps included routers nested: the route
# a request matched knows only its own part of the path (/users/{user_id}), not the prefixes
# it was included under (/api/v1). Path parameters hold no "/", so the prefix is the part of
# the request's path before as many segments as the route's own template has.
_templates: dict[int, tuple[object, str]] = {}


def route_template(scope: Scope) -> str:
    """The matched route's path template, e.g. /api/v1/users/{user_id}; `unmatched` if none."""
    route = scope.get("route")
    if route is None:
        # Starlette's own routes (/docs, /metrics) leave their endpoint rather than themselves.
        route = _starlette_route(scope)
        if route is None:
            return "unmatched"
    if (known := _templates.get(id(route))) is not None and known[0] is route:
        return known[1]
    own = getattr(route, "path_format", None)
    if not isinstance(own, str):
        return "unmatched"
    template = own
    if ":path}" not in own:
        parts = scope["path"].split("/")
        template = "/".join(parts[: len(parts) - own.count("/")]) + own
    _templates[id(route)] = (route, template)
    return template


def _starlette_route(scope: Scope) -> object | None:
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return None
    routes: Iterable[object] = getattr(scope.get("app"), "routes", ())
    for route in routes:
        if getattr(route, "endpoint", None) is endpoint:
            return route
    return None
