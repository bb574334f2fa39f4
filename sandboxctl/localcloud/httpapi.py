"""The local cloud serves the HTTP APIs it deployed, as API Gateway (v2) does, on its own port.

AWS behaviour restored: a request to an HTTP API is matched to a route (``METHOD /path`` with
``{param}`` and ``{proxy+}``, ``ANY``, ``$default``), checked by the route's JWT authorizer
(signature against the issuer's JWKS, ``kid``, ``iss``, ``aud``/``client_id``, ``exp``, ``nbf``,
``iat``, scopes), and handed to its Lambda proxy integration as a payload-2.0 event whose
``requestContext.authorizer.jwt.claims`` carries the verified claims as strings. Preflights and
CORS response headers come from the API's ``CorsConfiguration``. Gateway errors are API
Gateway's: 404 ``Not Found`` (no route), 401 ``Unauthorized`` (the function is never invoked),
403 ``Forbidden`` (scope), 413 (body over 10 MB), 500 ``Internal Server Error`` (function error
or bad response), 503 ``Service Unavailable`` (integration timeout, at most 30 s).

moto 5.2.5 stores HTTP APIs but serves none of them (``cloudformation_httpapi`` deploys them).
Hook: a WSGI layer in front of moto's ``DomainDispatcherApplication``. An API is reached at
``<endpoint>/_aws/execute-api/<api id>/...`` (or with ``Host: <api id>.execute-api.<anything>``,
as a browser on ``*.localhost`` sends it).

The local cloud is also the Firebase token issuer for local use: its own RSA key, an OpenID
discovery document and a JWKS at ``<endpoint>/_localcloud/securetoken/...``, and ID tokens with
Firebase's claims. A JWT authorizer whose issuer is ``https://securetoken.google.com/<project>``
discovers its keys there instead of at Google; any other issuer is unreachable (401), since the
local cloud never leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request, Response

FIREBASE_ISSUER_PREFIX = "https://securetoken.google.com/"
TOKEN_PREFIX_PATH = "/_localcloud/securetoken"  # noqa: S105 - a URL path, not a secret
EXECUTE_API_PATH = "/_aws/execute-api"
MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API payload quota
MAX_INTEGRATION_TIMEOUT_MS = 30_000
JWKS_CACHE_SECONDS = 7200  # API Gateway caches an issuer's keys up to two hours
ID_TOKEN_SECONDS = 3600  # Firebase ID tokens live one hour
RSA_ALGORITHMS = ["RS256", "RS384", "RS512"]  # "only RSA-based algorithms are supported"
# API Gateway delivers these content types as text; every other body is base64.
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript")


# ---------------------------------------------------------------------- the token issuer
@dataclass
class TokenIssuer:
    """Signs Firebase-shaped ID tokens with the local cloud's own key (never Google's)."""

    project_id: str
    private_key_pem: str
    kid: str

    @classmethod
    def generate(cls, project_id: str) -> TokenIssuer:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return cls(project_id=project_id, private_key_pem=pem, kid=secrets.token_hex(20))

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> TokenIssuer:
        return cls(data["project_id"], data["private_key_pem"], data["kid"])

    def to_dict(self) -> dict[str, str]:
        return {
            "project_id": self.project_id,
            "private_key_pem": self.private_key_pem,
            "kid": self.kid,
        }

    @property
    def issuer(self) -> str:
        return FIREBASE_ISSUER_PREFIX + self.project_id

    def jwks(self) -> dict[str, Any]:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def claims(
        self,
        uid: str,
        *,
        expires_in: int = ID_TOKEN_SECONDS,
        now: float | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """What Firebase puts in an ID token after a (custom-token) sign-in."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.project_id,
            "auth_time": issued,
            "user_id": uid,
            "sub": uid,
            "iat": issued,
            "exp": issued + int(expires_in),
            "firebase": {
                "identities": {"email": [email]} if email else {},
                "sign_in_provider": "password" if email else "custom",
            },
        }
        if email:
            claims |= {"email": email, "email_verified": True}
        return claims

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(
            claims, self.private_key_pem, algorithm="RS256", headers={"kid": kid or self.kid}
        )

    def token(
        self, uid: str, *, expires_in: int = ID_TOKEN_SECONDS, email: str | None = None
    ) -> str:
        """A Firebase ID token for `uid` (refused for an empty or over-long UID, as Firebase)."""
        if not uid or len(uid) > 128:
            raise ValueError("a Firebase UID is 1 to 128 characters")
        return self.sign(self.claims(uid, expires_in=expires_in, email=email))


# ---------------------------------------------------------------------- configuration
@dataclass
class _State:
    endpoint: str = ""
    account_id: str = ""
    region: str = "us-east-1"
    issuer: TokenIssuer | None = None
    jwks_clients: dict[str, jwt.PyJWKClient] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def configure(endpoint: str, account_id: str, region: str, issuer: TokenIssuer) -> None:
    """Which account's APIs to serve, and the token issuer the local cloud stands in for."""
    _state.endpoint, _state.account_id, _state.region = endpoint, account_id, region
    _state.issuer = issuer
    with _state.lock:
        _state.jwks_clients.clear()


def api_url(endpoint: str, api_id: str) -> str:
    """The base URL of an HTTP API's $default stage on the local cloud at `endpoint`."""
    return f"{endpoint.rstrip('/')}{EXECUTE_API_PATH}/{api_id}"


def discovery_url(issuer: str) -> str | None:
    """Where a JWT authorizer finds `issuer`'s OpenID configuration from the local cloud."""
    if not issuer.startswith(FIREBASE_ISSUER_PREFIX):
        return None
    project = issuer.removeprefix(FIREBASE_ISSUER_PREFIX)
    return f"{_state.endpoint}{TOKEN_PREFIX_PATH}/{project}/.well-known/openid-configuration"


# ---------------------------------------------------------------------- responses
def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _gateway_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"message": message}, headers)


class _Denied(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _unauthorized(description: str) -> _Denied:
    challenge = f'Bearer scope="" error="invalid_token" error_description="{description}"'
    return _Denied(_gateway_error(401, "Unauthorized", {"www-authenticate": challenge}))


# ---------------------------------------------------------------------- routing
def _apis() -> dict[str, Any]:
    from moto.apigatewayv2.models import apigatewayv2_backends

    return dict(apigatewayv2_backends[_state.account_id][_state.region].apis)


def _route_pattern(path: str) -> re.Pattern[str]:
    parts = []
    for segment in path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            parts.append(f"(?P<{_group(segment[1:-2])}>.+)")
        elif segment.startswith("{") and segment.endswith("}"):
            parts.append(f"(?P<{_group(segment[1:-1])}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("^/" + "/".join(parts) + "$")


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


def _params(route_path: str, match: re.Match[str]) -> dict[str, str]:
    names = re.findall(r"\{([^}+]+)\+?\}", route_path)
    return {name: match.group(_group(name)) for name in names}


def match_route(routes: Iterable[Any], method: str, path: str) -> tuple[Any, dict[str, str]] | None:
    """API Gateway's choice: exact paths before parameters before greedy, then ANY, $default."""
    candidates: list[tuple[tuple[int, int, int], Any, dict[str, str]]] = []
    default = None
    for route in routes:
        if route.route_key == "$default":
            default = route
            continue
        route_method, _, route_path = route.route_key.partition(" ")
        if route_method not in (method, "ANY"):
            continue
        match = _route_pattern(route_path).match(path)
        if not match:
            continue
        greedy = int("+}" in route_path)
        params = route_path.count("{")
        rank = (greedy, params, int(route_method == "ANY"))
        candidates.append((rank, route, _params(route_path, match)))
    if candidates:
        _, route, params = min(candidates, key=lambda c: c[0])
        return route, params
    return (default, {}) if default is not None else None


# ---------------------------------------------------------------------- CORS
def _cors(api: Any) -> dict[str, Any] | None:
    config = api.cors_configuration
    if not config:
        return None
    return {k[:1].lower() + k[1:]: v for k, v in dict(config).items()}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def allowed_origin(config: dict[str, Any], origin: str) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`, or None when it is not allowed."""
    for allowed in _as_list(config.get("allowOrigins")):
        if allowed == "*":
            return "*"
        if allowed in ("http://*", "https://*") and origin.startswith(allowed[:-1]):
            return origin
        if allowed.rstrip("/").lower() == origin.rstrip("/").lower():
            return origin
    return None


def _cors_headers(config: dict[str, Any], origin: str | None) -> dict[str, str]:
    if not origin:
        return {}
    allow = allowed_origin(config, origin)
    if allow is None:
        return {}
    headers = {"access-control-allow-origin": allow}
    if allow != "*":
        headers["vary"] = "origin"
    if config.get("allowCredentials"):
        headers["access-control-allow-credentials"] = "true"
    expose = _as_list(config.get("exposeHeaders"))
    if expose:
        headers["access-control-expose-headers"] = ",".join(expose)
    return headers


def _preflight(config: dict[str, Any], request: Request) -> Response:
    headers = _cors_headers(config, request.headers.get("origin"))
    if headers:
        methods = _as_list(config.get("allowMethods")) or ["*"]
        headers["access-control-allow-methods"] = ",".join(methods)
        allow_headers = _as_list(config.get("allowHeaders"))
        if allow_headers:
            headers["access-control-allow-headers"] = ",".join(allow_headers)
        if config.get("maxAge") is not None:
            headers["access-control-max-age"] = str(config["maxAge"])
        headers.pop("access-control-expose-headers", None)
    response = Response(b"", status=204)
    for name, value in headers.items():
        response.headers[name] = value
    return response


# ---------------------------------------------------------------------- the JWT authorizer
def _jwks_client(issuer: str) -> jwt.PyJWKClient:
    with _state.lock:
        client = _state.jwks_clients.get(issuer)
    if client is not None:
        return client
    url = discovery_url(issuer)
    if url is None:
        raise _unauthorized(f"the issuer {issuer} cannot be reached from the local cloud")
    import urllib.request

    # OpenID discovery, then the JWKS it names: both over HTTP, as API Gateway fetches them.
    try:
        with urllib.request.urlopen(url, timeout=1.5) as reply:  # noqa: S310 - 127.0.0.1
            jwks_uri = json.loads(reply.read())["jwks_uri"]
    except (OSError, ValueError, KeyError):
        raise _unauthorized("the issuer's OpenID configuration could not be read") from None
    client = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=2)
    with _state.lock:
        _state.jwks_clients[issuer] = client
    return client


def _identity(request: Request, sources: list[str]) -> str:
    values = []
    for source in sources or ["$request.header.Authorization"]:
        if source.startswith("$request.header."):
            value = request.headers.get(source.removeprefix("$request.header."))
        elif source.startswith("$request.querystring."):
            value = request.args.get(source.removeprefix("$request.querystring."))
        else:
            value = None
        if not value:
            # Every identity source must be present; otherwise 401 before any token check.
            raise _unauthorized("the request has no token")
        values.append(value)
    token = values[0].strip()
    return token[len("Bearer ") :].strip() if token.startswith("Bearer ") else token


def verify_jwt(token: str, jwt_config: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The token's claims if API Gateway's JWT authorizer would accept it; raises _Denied."""
    issuer = str(jwt_config.get("issuer") or jwt_config.get("Issuer") or "")
    audiences = _as_list(jwt_config.get("audience") or jwt_config.get("Audience"))
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _unauthorized("the token is not a valid JWT") from None
    if not header.get("kid"):
        raise _unauthorized("the token has no kid")
    if header.get("alg") not in RSA_ALGORITHMS:
        raise _unauthorized("the token is not signed with an RSA algorithm")
    try:
        signing_key = _jwks_client(issuer).get_signing_key(str(header["kid"]))
    except jwt.PyJWKClientError:
        raise _unauthorized("the token's kid is not in the issuer's keys") from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            signing_key.key,
            algorithms=[str(header["alg"])],
            issuer=issuer,
            options={"require": ["exp", "iss"], "verify_aud": False},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise _unauthorized("the token is not valid yet") from None
    except jwt.InvalidIssuerError:
        raise _unauthorized("the token does not have a valid issuer") from None
    except jwt.InvalidSignatureError:
        raise _unauthorized("the token's signature is not valid") from None
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"the token is not valid: {exc}") from None
    current = time.time() if now is None else now
    iat = claims.get("iat")
    if isinstance(iat, (int, float)) and iat > current:
        raise _unauthorized("the token is not valid yet")
    token_audiences = _as_list(claims.get("aud"))
    if "aud" not in claims:
        token_audiences = _as_list(claims.get("client_id"))  # checked only without aud
    if not set(token_audiences) & set(audiences):
        raise _unauthorized("the token does not have a valid audience")
    return claims


def go_string(value: Any) -> str:
    """A claim as API Gateway (written in Go) passes it on: always a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{go_string(value[k])}" for k in sorted(value))
        return f"map[{inner}]"
    return str(value)


def _authorize(api: Any, route: Any, request: Request) -> dict[str, Any] | None:
    """requestContext.authorizer for the route, or None for an open route; raises _Denied."""
    if (route.authorization_type or "NONE").upper() != "JWT":
        return None
    authorizer = api.authorizers.get(route.authorizer_id)
    if authorizer is None:
        raise _Denied(_gateway_error(500, "Internal Server Error"))
    token = _identity(request, list(authorizer.identity_source or []))
    claims = verify_jwt(token, dict(authorizer.jwt_config or {}))
    wanted = list(route.authorization_scopes or [])
    scopes: list[str] | None = None
    if wanted:
        granted = str(claims.get("scope") or claims.get("scp") or "").split()
        if not set(wanted) & set(granted):
            raise _Denied(_gateway_error(403, "Forbidden"))
        scopes = granted
    return {"jwt": {"claims": {k: go_string(v) for k, v in claims.items()}, "scopes": scopes}}


# ---------------------------------------------------------------------- the Lambda integration
def _function_arn(integration_uri: str) -> str:
    match = re.search(
        r"(arn:aws[\w-]*:lambda:[^/]+:function:[^/]+)(?:/invocations)?$", integration_uri
    )
    if not match:
        return integration_uri
    return match.group(1)


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind in _TEXT_TYPES


def build_event(
    api: Any,
    route: Any,
    request: Request,
    path: str,
    stage: str,
    params: dict[str, str],
    body: bytes,
    authorizer: dict[str, Any] | None,
) -> dict[str, Any]:
    """The payload-2.0 event API Gateway sends a Lambda proxy integration."""
    now = datetime.now(UTC)
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        if key == "cookie":
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    cookies = [c.strip() for raw in request.headers.getlist("cookie") for c in raw.split(";")]
    query: dict[str, str] = {}
    for name, value in request.args.items(multi=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    text = _is_text(request.headers.get("content-type", ""))
    host = request.host or ""
    context: dict[str, Any] = {
        "accountId": _state.account_id,
        "apiId": api.api_id,
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": path,
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "sourceIp": request.remote_addr or "127.0.0.1",
            "userAgent": request.headers.get("user-agent", ""),
        },
        "requestId": base64.b32encode(uuid.uuid4().bytes)[:16].decode().lower(),
        "routeKey": route.route_key,
        "stage": stage,
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if authorizer is not None:
        context["authorizer"] = authorizer
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": request.query_string.decode("latin-1"),
        "headers": headers,
        "requestContext": context,
        "isBase64Encoded": bool(body) and not text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if params:
        event["pathParameters"] = params
    if body:
        event["body"] = body.decode("utf-8", "replace") if text else base64.b64encode(body).decode()
    return event


def _invoke(function_arn: str, event: dict[str, Any], timeout_s: float) -> tuple[str, bytes]:
    """("ok" | "error" | "throttled" | "timeout", payload) of one synchronous invocation."""
    from moto.awslambda.models import lambda_backends

    backend = lambda_backends[_state.account_id][_state.region]
    try:
        fn = backend.get_function(function_arn)
    except Exception:  # the integration names a function that is gone
        return "error", b""
    outcome: dict[str, Any] = {}

    def call() -> None:
        response_headers: dict[str, str] = {}
        try:
            payload = fn.invoke(json.dumps(event), {}, response_headers)
        except Exception as exc:  # a throttle (429) or an invoke failure (500)
            outcome["result"] = ("throttled" if getattr(exc, "code", 0) == 429 else "error", b"")
            return
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        errored = "x-amz-function-error" in response_headers
        outcome["result"] = ("error" if errored else "ok", data)

    # API Gateway stops waiting at the integration timeout; the function runs on regardless.
    worker = threading.Thread(target=call, name="httpapi-integration", daemon=True)
    worker.start()
    worker.join(timeout_s)
    result: tuple[str, bytes] = outcome.get("result", ("timeout", b""))
    return result


def lambda_response(payload: bytes) -> Response:
    """A payload-2.0 Lambda result as API Gateway turns it into an HTTP response."""
    try:
        result = json.loads(payload)
    except ValueError:
        return _gateway_error(500, "Internal Server Error")
    if not isinstance(result, dict) or "statusCode" not in result:
        return Response(json.dumps(result), status=200, content_type="application/json")
    try:
        status = int(result["statusCode"])
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    except (TypeError, ValueError):
        return _gateway_error(500, "Internal Server Error")
    response = Response(data, status=status)
    response.headers.pop("content-type", None)
    for name, value in headers.items():
        response.headers[name] = value
    for cookie in result.get("cookies") or []:
        response.headers.add("set-cookie", str(cookie))
    return response


# ---------------------------------------------------------------------- the WSGI layer
def _locate(request: Request, apis: dict[str, Any]) -> tuple[Any, str] | None:
    """(api, path within it) for a request addressed to an HTTP API, else None."""
    path = request.path
    if path.startswith(EXECUTE_API_PATH + "/"):
        api_id, _, rest = path.removeprefix(EXECUTE_API_PATH + "/").partition("/")
        api = apis.get(api_id)
        return (api, "/" + rest) if api is not None else None
    host = (request.host or "").split(":", 1)[0]
    if ".execute-api." in host:
        api = apis.get(host.split(".", 1)[0])
        if api is not None and (api.protocol_type or "HTTP").upper() == "HTTP":
            return api, path
    return None


def serve_api(api: Any, path: str, request: Request) -> Response:
    body = request.get_data(cache=False)
    stage = "$default"
    first = path.strip("/").split("/", 1)[0]
    if first and first in api.stages and first != "$default":
        stage = first
        route_path = "/" + path.strip("/").partition("/")[2]
    else:
        route_path = path
    if stage == "$default" and "$default" not in api.stages:
        return _gateway_error(404, "Not Found")
    cors = _cors(api)
    origin = request.headers.get("origin")
    matched = match_route(api.routes.values(), request.method, route_path)
    is_preflight = (
        request.method == "OPTIONS"
        and origin
        and request.headers.get("access-control-request-method")
    )
    if cors is not None and is_preflight and matched is None:
        # API Gateway answers preflights itself; an OPTIONS, ANY or $default route gets them.
        return _preflight(cors, request)
    response = _dispatch(api, request, route_path, path, stage, matched, body)
    if cors is not None:
        for name in list(response.headers.keys()):
            if name.lower().startswith("access-control-"):
                del response.headers[name]  # API Gateway ignores the backend's CORS headers
        for name, value in _cors_headers(cors, origin).items():
            response.headers[name] = value
    response.headers["apigw-requestid"] = (
        response.headers.get("apigw-requestid") or uuid.uuid4().hex[:16]
    )
    return response


def _dispatch(
    api: Any,
    request: Request,
    route_path: str,
    raw_path: str,
    stage: str,
    matched: tuple[Any, dict[str, str]] | None,
    body: bytes,
) -> Response:
    if matched is None:
        return _gateway_error(404, "Not Found")
    route, params = matched
    if len(body) > MAX_BODY_BYTES:
        return _gateway_error(413, "Request Entity Too Large")
    try:
        authorizer = _authorize(api, route, request)
    except _Denied as denied:
        return denied.response
    integration_id = str(route.target or "").removeprefix("integrations/")
    integration = api.integrations.get(integration_id)
    if integration is None or str(integration.integration_type).upper() != "AWS_PROXY":
        return _gateway_error(500, "Internal Server Error")
    event = build_event(api, route, request, raw_path, stage, params, body, authorizer)
    timeout_ms = min(int(integration.timeout_in_millis or MAX_INTEGRATION_TIMEOUT_MS), 30_000)
    outcome, payload = _invoke(
        _function_arn(str(integration.integration_uri)), event, timeout_ms / 1000
    )
    if outcome == "timeout":
        return _gateway_error(503, "Service Unavailable")
    if outcome == "throttled":
        return _gateway_error(429, "Too Many Requests")
    if outcome == "error":
        return _gateway_error(500, "Internal Server Error")
    return lambda_response(payload)


def _serve_issuer(request: Request) -> Response | None:
    issuer = _state.issuer
    rest = request.path.removeprefix(TOKEN_PREFIX_PATH)
    if issuer is None or request.method != "GET":
        return None
    if rest == "/jwk":
        return _json(200, issuer.jwks(), {"cache-control": "public, max-age=7200"})
    if rest.endswith("/.well-known/openid-configuration"):
        project = rest.removesuffix("/.well-known/openid-configuration").strip("/")
        return _json(
            200,
            {
                "issuer": FIREBASE_ISSUER_PREFIX + project,
                "jwks_uri": f"{_state.endpoint}{TOKEN_PREFIX_PATH}/jwk",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            },
        )
    return None


class HttpApiApplication:
    """WSGI: HTTP API and token-issuer requests here, everything else to moto."""

    def __init__(self, moto_app: Callable[..., Any]) -> None:
        self.moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        host = environ.get("HTTP_HOST", "")
        if not (
            path.startswith((EXECUTE_API_PATH + "/", TOKEN_PREFIX_PATH + "/"))
            or ".execute-api." in host
        ):
            return self.moto_app(environ, start_response)
        request = Request(environ)
        response: Response | None = None
        if path.startswith(TOKEN_PREFIX_PATH + "/"):
            response = _serve_issuer(request) or _gateway_error(404, "Not Found")
        else:
            located = _locate(request, _apis()) if _state.account_id else None
            if located is None:
                if not path.startswith(EXECUTE_API_PATH + "/"):
                    return self.moto_app(environ, start_response)  # e.g. a REST API host
                response = _gateway_error(404, "Not Found")
            else:
                response = serve_api(located[0], located[1], request)
        return response(environ, start_response)


def moto_server(ip_address: str, port: int) -> Any:
    """moto's threaded server with the HTTP API layer in front; a bind error is raised.

    ``ThreadedMotoServer.start`` waits forever when its thread cannot bind the port (the error
    dies in the thread), so the bind happens here, where its error can reach the caller.
    """
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class _Server(ThreadedMotoServer):
        def __init__(self) -> None:
            super().__init__(ip_address=ip_address, port=port, verbose=False)
            app = HttpApiApplication(DomainDispatcherApplication(create_backend_app))
            # Bound here so that OSError (e.g. EADDRINUSE) reaches the caller; werkzeug would
            # print its own advice and exit the process.
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((ip_address, port))
                listener.listen(128)
            except OSError:
                listener.close()
                raise
            self._listener = listener
            self._server = make_server(
                ip_address,
                listener.getsockname()[1],
                app,
                True,
                request_handler=MotoRequestHandler,
                fd=listener.fileno(),
            )

        def _server_entry(self) -> None:
            assert self._server is not None
            self._server_ready_event.set()
            self._server.serve_forever()

    return _Server()
