"""The API's OpenAPI 3 description, served at /v1/openapi.json and pinned by a test."""

_JSON = {"application/json": {"schema": {"type": "object"}}}
_ERR = {"description": "error: {\"error\": message}", "content": _JSON}
_CONFIG_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["source"],
    "properties": {"source": {"type": "string", "description": "the tenant YAML"},
                   "filename": {"type": "string", "description": "name used in diagnostics"}},
    "additionalProperties": False}}}}
_TRACE_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["from", "to_ip"],
    "properties": {"from": {"type": "string", "example": "blue/web1"},
                   "to_ip": {"type": "string", "example": "10.0.0.3"},
                   "proto": {"type": "string", "enum": ["icmp", "tcp", "udp"]},
                   "dst_port": {"type": "integer"},
                   "src_ip": {"type": "string", "description": "spoofed source IP"},
                   "src_mac": {"type": "string", "description": "spoofed source MAC"},
                   "real": {"type": "boolean", "description": "also run ofproto/trace"}}}}}}


def _ok(desc: str) -> dict:
    return {"200": {"description": desc, "content": _JSON}}


SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "netvirt controller API", "version": "1"},
    "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
    "security": [{}, {"token": []}],
    "paths": {
        "/v1/status": {"get": {"summary": "revision and per-hypervisor state",
                               "parameters": [
                                   {"name": "wait_revision", "in": "query", "schema": {"type": "integer"},
                                    "description": "answer once in sync at this revision"},
                                   {"name": "timeout", "in": "query", "schema": {"type": "number"},
                                    "description": "seconds to wait at most (default 30, max 300)"},
                                   {"name": "healthy", "in": "query", "schema": {"type": "boolean"},
                                    "description": "with wait_revision: also wait until every "
                                                   "configured port is bound, with its flows"}],
                               "responses": _ok("status")}},
        "/v1/topology": {"get": {"summary": "live topology", "responses": _ok("topology")}},
        "/v1/config": {"post": {"summary": "apply a config atomically", "requestBody": _CONFIG_BODY,
                                "responses": {**_ok("accepted: revision"), "400": _ERR,
                                              "409": _ERR, "422": _ERR}}},
        "/v1/plan": {"post": {"summary": "what a config would change", "requestBody": _CONFIG_BODY,
                              "responses": {**_ok("plan per hypervisor"), "400": _ERR,
                                            "409": _ERR, "422": _ERR}}},
        "/v1/trace": {"post": {"summary": "trace a packet through the pipeline",
                               "requestBody": _TRACE_BODY,
                               "responses": {**_ok("steps and verdict"), "400": _ERR}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/v1/openapi.json": {"get": {"summary": "this document", "responses": _ok("OpenAPI")}},
    },
}
