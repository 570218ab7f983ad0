"""Tool calling, OpenAI -> Anthropic: tool definitions, ``tool_choice``, assistant tool calls.

- ``tools[].function`` -> ``{"name", "description", "input_schema", "strict"}``;
- ``tool_choice``: ``auto`` -> ``auto``, ``none`` -> ``none``, ``required`` -> ``any``,
  a named function -> ``{"type": "tool", "name"}``; ``parallel_tool_calls: false`` ->
  ``disable_parallel_tool_use``;
- an assistant ``tool_calls`` entry -> a ``tool_use`` block whose ``input`` is the parsed
  ``arguments`` (which must be a JSON object).
"""

from __future__ import annotations

from typing import Any

import orjson

from tokenomy.errors import InvalidRequest

__all__ = ["tool_use_block", "translate_tools"]


def tool_use_block(call: Any, param: str) -> dict[str, Any]:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise InvalidRequest("Only function tool calls are supported.", param=f"{param}.type")
    function = call.get("function")
    call_id = call.get("id")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("A tool call needs an id.", param=f"{param}.id")
    if not isinstance(function, dict) or not isinstance(name, str) or not name:
        raise InvalidRequest("A tool call needs a function name.", param=f"{param}.function.name")
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        tool_input = None
    if not isinstance(tool_input, dict):
        raise InvalidRequest(
            "Tool call arguments must be a JSON object.", param=f"{param}.function.arguments"
        )
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def translate_tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    converted = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if converted:
        out["tools"] = converted
    choice = _tool_choice(body.get("tool_choice"), bool(converted))
    if body.get("parallel_tool_calls") is False and converted:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        out["tool_choice"] = choice


def _tool(tool: Any, param: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise InvalidRequest(
            "Only function tools are supported for this model.", param=f"{param}.type"
        )
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str) or not name:
        raise InvalidRequest("A function tool needs a name.", param=f"{param}.function.name")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, dict):
        raise InvalidRequest(
            "Tool parameters must be a JSON schema object.", param=f"{param}.function.parameters"
        )
    elif "type" not in schema:
        schema = {"type": "object", **schema}
    out: dict[str, Any] = {"name": name, "input_schema": schema}
    if isinstance(function.get("description"), str) and function["description"]:
        out["description"] = function["description"]
    if function.get("strict") is True:
        out["strict"] = True
    return out


def _tool_choice(choice: Any, have_tools: bool) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice} if have_tools else None
    if choice == "required":
        result: dict[str, Any] = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                "tool_choice needs a function name.", param="tool_choice.function.name"
            )
        result = {"type": "tool", "name": name}
    else:
        raise InvalidRequest(
            "tool_choice must be 'auto', 'none', 'required' or a named function.",
            param="tool_choice",
        )
    if not have_tools:
        raise InvalidRequest("tool_choice requires 'tools'.", param="tool_choice")
    return result
