"""CloudFormation creates HTTP APIs: API, stage, routes, integrations, JWT authorizers.

AWS behaviour restored: ``AWS::ApiGatewayV2::Api`` (with an OpenAPI ``Body``, as the SAM
transform of ``AWS::Serverless::HttpApi`` produces, including its ``x-amazon-apigateway-
integration`` routes and ``x-amazon-apigateway-authorizer`` JWT authorizers), ``Stage``, ``Route``,
``Integration`` and ``Authorizer`` are created, so the stack deploys and ``Ref``/``GetAtt``
(``ApiId``, ``ApiEndpoint``) resolve to the API's id and endpoint.

moto 5.2.5 has the API Gateway v2 backend but no CloudFormation models for it: the resources are
skipped with a warning and every ``Ref`` to them resolves to nothing. Hook: new
``CloudFormationModel`` subclasses, registered by clearing
``moto.cloudformation.parsing.get_model_list/get_model_map/get_name_type_map`` caches. Serving
HTTP requests through the API (routing to Lambda, verifying JWTs) is ``httpapi.py``'s job.
"""

from __future__ import annotations

import json
from typing import Any

from moto.core.common_models import CloudFormationModel

from sandboxctl.localcloud.fixes import FidelityCheckError

API_TYPE = "AWS::ApiGatewayV2::Api"


def _backend(account_id: str, region_name: str) -> Any:
    from moto.apigatewayv2.models import apigatewayv2_backends

    return apigatewayv2_backends[account_id][region_name]


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _import_authorizers(api: Any, body: dict[str, Any]) -> None:
    """JWT/Lambda authorizers from the OpenAPI body, and the routes that use them."""
    schemes = body.get("components", {}).get("securitySchemes", {})
    by_name: dict[str, str] = {}
    for name, scheme in schemes.items():
        config = scheme.get("x-amazon-apigateway-authorizer")
        if not config:
            continue
        identity = scheme.get("name")
        sources = config.get("identitySource") or (
            [f"$request.header.{identity}"] if identity else []
        )
        authorizer = api.create_authorizer(
            auth_creds_arn=config.get("authorizerCredentialsArn"),
            auth_payload_format_version=config.get("authorizerPayloadFormatVersion"),
            auth_result_ttl=config.get("authorizerResultTtlInSeconds"),
            authorizer_type=config.get("type", "jwt").upper(),
            authorizer_uri=config.get("authorizerUri"),
            enable_simple_response=config.get("enableSimpleResponses"),
            identity_source=sources if isinstance(sources, list) else [sources],
            identity_validation_expr=None,
            jwt_config=config.get("jwtConfiguration"),
            name=name,
        )
        by_name[name] = authorizer.id
    default_security = body.get("security") or []
    for path, methods in body.get("paths", {}).items():
        for method, details in methods.items():
            if not isinstance(details, dict) or "x-amazon-apigateway-integration" not in details:
                continue
            security = details.get("security", default_security)
            names = [name for requirement in security for name in requirement]
            route_key = f"{method.upper()} {path}"
            route = next((r for r in api.routes.values() if r.route_key == route_key), None)
            if route is None or not names or names[0] not in by_name:
                continue
            route.authorizer_id = by_name[names[0]]
            route.authorization_type = "JWT"
            route.authorization_scopes = [
                scope
                for requirement in security
                for scopes in requirement.values()
                for scope in scopes
            ]


class HttpApi(CloudFormationModel):
    """AWS::ApiGatewayV2::Api."""

    def __init__(self, api: Any) -> None:
        self.api = api

    @staticmethod
    def cloudformation_type() -> str:
        return API_TYPE

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @property
    def physical_resource_id(self) -> str:
        return str(self.api.api_id)

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("ApiId", "ApiEndpoint")

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name == "ApiId":
            return self.api.api_id
        if attribute_name == "ApiEndpoint":
            return self.api.api_endpoint
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> HttpApi:
        properties = cloudformation_json.get("Properties", {})
        body = properties.get("Body") or {}
        api = _backend(account_id, region_name).create_api(
            api_key_selection_expression=properties.get("ApiKeySelectionExpression"),
            cors_configuration=_camel(properties.get("CorsConfiguration")),
            description=properties.get("Description") or body.get("info", {}).get("description"),
            disable_schema_validation=properties.get("DisableSchemaValidation"),
            disable_execute_api_endpoint=properties.get("DisableExecuteApiEndpoint"),
            name=properties.get("Name") or body.get("info", {}).get("title") or resource_name,
            protocol_type=properties.get("ProtocolType", "HTTP"),
            route_selection_expression=properties.get("RouteSelectionExpression"),
            tags=properties.get("Tags") or {},
            version=properties.get("Version"),
        )
        if body:
            api.import_api(
                json.dumps(body), fail_on_warnings=bool(properties.get("FailOnWarnings"))
            )
            _import_authorizers(api, body)
        return cls(api)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: HttpApi,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> HttpApi:
        body = cloudformation_json.get("Properties", {}).get("Body")
        if body:
            original_resource.api.import_api(json.dumps(body), fail_on_warnings=False)
            _import_authorizers(original_resource.api, body)
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        _backend(account_id, region_name).delete_api(resource_name)

    def delete(self, account_id: str, region_name: str) -> None:
        _backend(account_id, region_name).delete_api(self.api.api_id)


class _ApiChild:
    """A resource that lives inside an HTTP API (its id is the child's own id).

    Each concrete model also lists CloudFormationModel as a direct base: moto finds models
    through ``CloudFormationModel.__subclasses__()``, which sees direct subclasses only.
    """

    def __init__(self, api_id: str, child_id: str) -> None:
        self.api_id = api_id
        self.child_id = child_id

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @property
    def physical_resource_id(self) -> str:
        return self.child_id

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("AuthorizerId", "IntegrationId", "RouteId")

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        return self.child_id


# How each child resource's CloudFormation properties become the backend call's arguments:
# (argument, property, default), _REQUIRED for a property the resource must have.
_REQUIRED = object()
_Table = tuple[tuple[str, str, Any], ...]
_ROUTE_ARGS: _Table = (
    ("api_key_required", "ApiKeyRequired", False),
    ("authorization_scopes", "AuthorizationScopes", []),
    ("authorization_type", "AuthorizationType", None),
    ("authorizer_id", "AuthorizerId", None),
    ("model_selection_expression", "ModelSelectionExpression", None),
    ("operation_name", "OperationName", None),
    ("request_models", "RequestModels", None),
    ("request_parameters", "RequestParameters", None),
    ("route_key", "RouteKey", _REQUIRED),
    ("route_response_selection_expression", "RouteResponseSelectionExpression", None),
    ("target", "Target", None),
)
_INTEGRATION_ARGS: _Table = (
    ("connection_id", "ConnectionId", None),
    ("connection_type", "ConnectionType", None),
    ("content_handling_strategy", "ContentHandlingStrategy", None),
    ("credentials_arn", "CredentialsArn", None),
    ("description", "Description", None),
    ("integration_method", "IntegrationMethod", None),
    ("integration_type", "IntegrationType", _REQUIRED),
    ("integration_uri", "IntegrationUri", None),
    ("passthrough_behavior", "PassthroughBehavior", None),
    ("payload_format_version", "PayloadFormatVersion", None),
    ("integration_subtype", "IntegrationSubtype", None),
    ("request_parameters", "RequestParameters", None),
    ("request_templates", "RequestTemplates", None),
    ("response_parameters", "ResponseParameters", None),
    ("template_selection_expression", "TemplateSelectionExpression", None),
    ("timeout_in_millis", "TimeoutInMillis", None),
    ("tls_config", "TlsConfig", None),
)
_AUTHORIZER_ARGS: _Table = (
    ("auth_creds_arn", "AuthorizerCredentialsArn", None),
    ("auth_payload_format_version", "AuthorizerPayloadFormatVersion", None),
    ("auth_result_ttl", "AuthorizerResultTtlInSeconds", None),
    ("authorizer_type", "AuthorizerType", _REQUIRED),
    ("authorizer_uri", "AuthorizerUri", None),
    ("enable_simple_response", "EnableSimpleResponses", None),
    ("identity_source", "IdentitySource", None),
    ("identity_validation_expr", "IdentityValidationExpression", None),
)


def _arguments(properties: dict[str, Any], table: _Table) -> dict[str, Any]:
    arguments = {"api_id": properties["ApiId"]}
    for argument, name, default in table:
        arguments[argument] = (
            properties[name] if default is _REQUIRED else properties.get(name, default)
        )
    return arguments


def _route(backend: Any, p: dict[str, Any], resource_name: str) -> str:
    return str(backend.create_route(**_arguments(p, _ROUTE_ARGS)).route_id)


def _integration(backend: Any, p: dict[str, Any], resource_name: str) -> str:
    return str(backend.create_integration(**_arguments(p, _INTEGRATION_ARGS)).id)


def _authorizer(backend: Any, p: dict[str, Any], resource_name: str) -> str:
    arguments = _arguments(p, _AUTHORIZER_ARGS)
    arguments["jwt_config"] = _camel(p.get("JwtConfiguration"))
    arguments["name"] = p.get("Name", resource_name)
    return str(backend.create_authorizer(**arguments).id)


def _stage(backend: Any, p: dict[str, Any], resource_name: str) -> str:
    config = {k: v for k, v in p.items() if k != "ApiId"}
    return str(backend.create_stage(p["ApiId"], _camel(config)).name)


def _child_model(name: str, cfn_type: str, create: Any) -> type:
    """A CloudFormation model for one child resource type of an HTTP API."""

    def create_from_cloudformation_json(
        cls: Any,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        properties = dict(cloudformation_json.get("Properties", {}))
        child_id = create(_backend(account_id, region_name), properties, resource_name)
        return cls(properties["ApiId"], child_id)

    return type(
        name,
        (_ApiChild, CloudFormationModel),
        {
            "__doc__": f"{cfn_type}.",
            "cloudformation_type": staticmethod(lambda: cfn_type),
            "create_from_cloudformation_json": classmethod(create_from_cloudformation_json),
        },
    )


HttpApiStage = _child_model("HttpApiStage", "AWS::ApiGatewayV2::Stage", _stage)
HttpApiRoute = _child_model("HttpApiRoute", "AWS::ApiGatewayV2::Route", _route)
HttpApiIntegration = _child_model(
    "HttpApiIntegration", "AWS::ApiGatewayV2::Integration", _integration
)
HttpApiAuthorizer = _child_model("HttpApiAuthorizer", "AWS::ApiGatewayV2::Authorizer", _authorizer)


def check() -> None:
    import inspect

    from moto.apigatewayv2.models import Api, ApiGatewayV2Backend
    from moto.cloudformation import parsing

    for name in ("get_model_list", "get_model_map", "get_name_type_map"):
        if not hasattr(getattr(parsing, name, None), "cache_clear"):
            raise FidelityCheckError(f"moto.cloudformation.parsing.{name} is no longer a cache")
    for owner, method, params in (
        (ApiGatewayV2Backend, "create_api", {"name", "protocol_type", "tags"}),
        (ApiGatewayV2Backend, "create_stage", {"api_id", "config"}),
        (ApiGatewayV2Backend, "create_route", {"api_id", "route_key", "target"}),
        (ApiGatewayV2Backend, "create_integration", {"api_id", "integration_type"}),
        (ApiGatewayV2Backend, "create_authorizer", {"api_id", "jwt_config"}),
        (Api, "import_api", {"body_str", "fail_on_warnings"}),
        (Api, "create_authorizer", {"jwt_config", "identity_source"}),
    ):
        found = set(inspect.signature(getattr(owner, method)).parameters)
        if not params <= found:
            raise FidelityCheckError(f"{owner.__name__}.{method} lost {params - found}")


def apply() -> None:
    from moto.cloudformation import parsing

    # The model classes above register themselves as CloudFormationModel subclasses; moto
    # caches its type -> model map, so drop the cache once they exist.
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
