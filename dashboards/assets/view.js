// The dashboard's client-side callbacks (registered in dashboards/callbacks.py and
// backward_callbacks.py): moving the step marker of the figures over training, keeping the
// view in the address, and the backward view's cursor.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  labkit: {
    // The marker is each figure's FIRST shape (dashboards/figures/style.py step_line);
    // drawn[id] = [axis kind, first step, last step] says where the step sits
    // (dashboards/figures/axes.py: the same "% of the run" and label-side rules).
    moveMarkers: function (record, drawn, steps, ...shown) {
      const ids = ["curves", "hist-time-activation", "hist-time", "gradient-flow", "update-flow"];
      const none = window.dash_clientside.no_update;
      if (!drawn || !steps || record === null || record === undefined || !(record in steps)) {
        return ids.map(() => none);
      }
      const step = steps[record];
      return ids.map(function (id, i) {
        const figure = shown[i];
        const how = drawn[id];
        const shapes = figure && figure.layout && figure.layout.shapes;
        if (!how || !shapes || !shapes.length || shapes[0].type !== "line" || shapes[0].yref !== "paper") {
          return none;
        }
        const [kind, first, last] = how;
        const x = kind === "fraction" ? step / (last || 1) : step;
        const right =
          kind === "log" && first > 0 && step > 0
            ? Math.log10(step) > (Math.log10(first) + Math.log10(last)) / 2
            : step > (first + last) / 2;
        const marker = Object.assign({}, shapes[0], { x0: x, x1: x });
        marker.label = Object.assign({}, shapes[0].label, {
          text: "step " + step.toLocaleString("en-US"),
          xanchor: right ? "right" : "left",
        });
        const layout = Object.assign({}, figure.layout, { shapes: [marker, ...shapes.slice(1)] });
        return Object.assign({}, figure, { layout: layout });
      });
    },

    // The address holds the view (dashboards/view.py is the one home of its keys).
    keepAddress: function (
      run, compare, record, layer, kernels, maps, probe, axis, backward, element, steps, layers
    ) {
      const none = window.dash_clientside.no_update;
      if (!run || !steps || !steps.length || record === null || record === undefined) {
        return none;
      }
      const label = function (value) {
        const option = (layers || []).find((o) => o.value === value);
        return option ? option.label : null;
      };
      const query = new URLSearchParams();
      query.set("run", run);
      if (compare) query.set("compare", compare);
      query.set("step", String(steps[Math.min(Math.max(record, 0), steps.length - 1)]));
      if (label(layer) !== null) query.set("layer", label(layer));
      if (label(kernels) !== null && kernels !== layer) query.set("kernels", label(kernels));
      if (label(maps) !== null && maps !== layer) query.set("maps", label(maps));
      if (probe !== null && probe !== undefined) query.set("probe", String(probe));
      if (axis && axis !== "auto") query.set("axis", axis);
      const opened = backward === "loss" ? "loss" : label(backward);
      if (opened !== null) {
        query.set("backward", opened);
        if (element && element.layer === backward && element.part && element.index) {
          query.set("part", element.part);
          query.set("element", element.index.join(","));
        }
      }
      const address = "?" + query.toString().replace(/%2C/g, ","); // element=0,5,7 reads
      if (window.location.search !== address) {
        window.history.replaceState(null, "", address + window.location.hash);
      }
      return none;
    },

    // The backward view's cursor (dashboards/backward_callbacks.py): only while a layer
    // is chosen, so a step move asks the server for nothing more while the view is closed;
    // once, as {layer: null}, when it is closed.
    backwardCursor: function (run, record, probe, layer, steps) {
      const none = window.dash_clientside.no_update;
      const triggered = (window.dash_clientside.callback_context.triggered || []).map(
        (t) => t.prop_id
      );
      if (layer === null || layer === undefined) {
        return triggered.includes("backward-layer.value") ? { run: run, layer: null } : none;
      }
      if (!run || !steps || !steps.length || record === null || record === undefined) {
        return none;
      }
      const step = steps[Math.min(Math.max(record, 0), steps.length - 1)];
      return { run: run, step: step, probe: probe || 0, layer: layer };
    },
  },
});
