"""Callback requests as Dash's renderer posts them to ``/_dash-update-component``, built
from an app's callback map: for the tests and benchmarks that drive the server as a page does.

The body is the one a browser sends (seen in Chromium's network log of the dashboard, and
in dash's own tests/integration/callbacks/test_malformed_request.py)::

    {"output": "..gradchecks.data...check-status.children..",
     "outputs": [{"id": "gradchecks", "property": "data"}, ...],
     "inputs": [{"id": "run", "property": "value", "value": "lenet"},
                {"id": "run-check", "property": "n_clicks", "value": 1}],
     "changedPropIds": ["run-check.n_clicks"],
     "state": [{"id": "record", "property": "value", "value": 20}]}

An input the page has no value for is sent without ``"value"``.
"""

from __future__ import annotations

URL = "/_dash-update-component"


CLICK = "check-status.children"  # the check button's status: what a click answers


def callback_key(app, output: str) -> str:
    """The ``callback_map`` key of the callback that writes ``output`` (``"id.property"``,
    or a key itself: a callback whose one output others write too is ``"id.property@…"``)."""
    if output in app.callback_map:
        return output
    keys = [key for key in app.callback_map if output in outputs_of(key)]
    if len(keys) != 1:
        raise ValueError(f"{output}: {len(keys)} callbacks write it")
    return keys[0]


def outputs_of(key: str) -> list[str]:
    """``"..a.b...c.d.."`` -> ``["a.b", "c.d"]``; ``"a.b"`` (or ``"a.b@hash"``) -> ``["a.b"]``."""
    if key.startswith(".."):
        return key[2:-2].split("...")
    return [key.split("@")[0]]


def body(app, output: str, values: dict, changed: tuple[str, ...] = ()) -> dict:
    """The request for the callback writing ``output``, with the page's ``values`` by
    ``"id.property"``; ``changed`` are the inputs that triggered it (none: a page load)."""
    key = callback_key(app, output)
    spec = app.callback_map[key]

    def items(dependencies):
        listed = []
        for dependency in dependencies:
            item = {"id": dependency["id"], "property": dependency["property"]}
            prop = f"{item['id']}.{item['property']}"
            if prop in values:
                item["value"] = values[prop]
            listed.append(item)
        return listed

    def as_dependency(text: str) -> dict:
        component, prop = text.rsplit(".", 1)
        return {"id": component, "property": prop}

    outputs = [as_dependency(text) for text in outputs_of(key)]
    return {
        "output": key,
        "outputs": outputs if key.startswith("..") else outputs[0],
        "inputs": items(spec["inputs"]),
        "changedPropIds": list(changed),
        "state": items(spec["state"]),
    }


def post(client, app, output: str, values: dict, changed=(), **kwargs):
    """Post the callback request; returns the Flask test response."""
    return client.post(URL, json=body(app, output, values, tuple(changed)), **kwargs)


def answer(response, output: str):
    """The value the response gives ``output`` (``"id.property"``)."""
    component, prop = output.rsplit(".", 1)
    return response.get_json()["response"][component][prop]
