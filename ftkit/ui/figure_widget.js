// ftkit's FigureWidget: plotly's widget code (about 5 MB) is imported once per page, after anywidget's start
// window (2 s in anywidget 0.11): a reloaded page with several figures, or a busy machine, takes longer than that
// to parse three copies, and a figure that misses the window never draws. The code travels once per kernel, as
// bytes, in the model every figure's _plotly_code names. Changes that arrive before plotly's code is ready are
// replayed to it in order, each with the value it carried.
const KEY = Symbol.for("ftkit.plotly-widget");

async function plotlyCode(model) {
  const id = String(model.get("_plotly_code")).replace(/^IPY_MODEL_/, "");
  const deadline = Date.now() + 120000;
  for (;;) {
    try {     // a reloaded page restores the models in any order: the code's may come after this figure's
      const holder = await model.widget_manager.get_model(id);
      return holder.get("code");
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

function plotlyWidget(model) {
  if (!globalThis[KEY]) {
    globalThis[KEY] = plotlyCode(model).then((code) => {
      const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
      return import(/* webpackIgnore: true */ url).finally(() => URL.revokeObjectURL(url));
    });
    globalThis[KEY].catch(() => { globalThis[KEY] = null; });     // the next figure tries again
  }
  return globalThis[KEY];
}

const SYNCED = ["_widget_data", "_widget_layout", "_py2js_addTraces", "_py2js_deleteTraces", "_py2js_moveTraces",
  "_py2js_restyle", "_py2js_relayout", "_py2js_update", "_py2js_animate", "_py2js_removeLayoutProps",
  "_py2js_removeTraceProps"];

export default () => {
  let ready;
  return {
    initialize({ model }) {
      let early = [], pinned = null;
      const handlers = {};
      const record = (key) => () => { if (early) early.push([key, model.get(key)]); };
      for (const key of SYNCED) model.on(`change:${key}`, record(key));
      const seen = {      // what plotly's code gets as its model: reads see a replayed change's own value
        get: (key) => (pinned && key === pinned[0] ? pinned[1] : model.get(key)),
        set: (...args) => model.set(...args),
        save_changes: () => model.save_changes(),
        send: (...args) => model.send(...args),
        on: (name, callback) => { handlers[name] = callback; model.on(name, callback); },
        off: (...args) => model.off(...args),
      };
      ready = plotlyWidget(model).then((module) => {
        const widget = module.default();
        widget.initialize({ model: seen });
        for (const [key, value] of early) {
          pinned = [key, value];
          handlers[`change:${key}`]?.();
        }
        pinned = early = null;
        return widget;
      });
      ready.catch((error) => console.error("[ftkit] plotly's widget code did not load:", error));
    },
    async render({ model, el }) {
      const widget = await ready;
      return widget.render({ model, el });
    },
  };
};
