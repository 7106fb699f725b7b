"""The site's stylesheet and its one script: draw every figure from its JSON, and drive the precomputed
("static") sliders that stand in for widgets — see :mod:`ftkit.export.statics` for the data they read."""
from __future__ import annotations

__all__ = ["PAGE_CSS", "PAGE_JS", "plotly_js"]


def plotly_js() -> str:
    """plotly.js as the installed plotly ships it (one copy per site; no CDN)."""
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


PAGE_CSS = """
body{font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0;background:#fff}
main{max-width:1060px;margin:0 auto;padding:24px 28px 80px}
h1,h2,h3{line-height:1.25}h1{font-size:2em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}
a{color:#0969da}code{background:#f6f8fa;padding:.1em .3em;border-radius:4px;font-size:90%}
pre{overflow-x:auto;font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;margin:0}
table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left}
.cell{margin:14px 0}.cell.code pre.source{background:#f6f8fa;border:1px solid #e3e6ea;border-radius:6px;padding:10px}
.cell-label{font-size:12px;color:#57606a;margin-bottom:2px}
.outputs pre{padding:6px 10px}.outputs .stderr{background:#fff4f4}.outputs .error{background:#ffebe9;color:#82071e}
.figure{width:100%;min-height:200px}.figure-png,.image-output{max-width:100%}
.widget-note{color:#57606a;font-style:italic;border-left:3px solid #d0d7de;padding-left:10px}
.html-output{overflow-x:auto}details{background:#f6f8fa;border-radius:6px;padding:6px 10px;margin:8px 0}
.index td:first-child{white-space:nowrap}.nav{font-size:14px;margin-bottom:10px}math[display=block]{margin:10px 0}
.highlight .k,.highlight .kn,.highlight .ow{color:#cf222e}.highlight .s,.highlight .s1,.highlight .s2,
.highlight .sd{color:#0a3069}.highlight .c1,.highlight .c{color:#6e7781}.highlight .mi,.highlight .mf{color:#0550ae}
.highlight .nf,.highlight .nc{color:#8250df}.highlight .nb{color:#953800}
"""

# Each figure's JSON sits in <script type="application/json" class="figure-data" data-for="ID">. A figure whose
# layout.meta.ftkit_static is set carries precomputed frames:
#   {kind: "grid", traces: [indices], table: {"i,j": [[x, y, z|null, name] per trace]}}
#     every slider picks one value; the drawn paths are the table's entry for the tuple of picks;
#   {kind: "reveal", traces: [indices], clocks: [[step per point] per trace], ticks: [step per slider step]}
#     the slider (and its play button) shows each trace up to a step.
PAGE_JS = r"""
(function(){
  function key(picks){return picks.join(",");}
  function grid(gd, spec){
    var picks = (gd.layout.sliders||[]).map(function(s){return s.active||0;});
    function draw(){
      var rows = spec.table[key(picks)]; if(!rows){return;}
      var upd = {x: [], y: [], z: [], name: []};
      rows.forEach(function(r){upd.x.push(r[0]); upd.y.push(r[1]); upd.z.push(r[2]); upd.name.push(r[3]);});
      var has3d = rows.some(function(r){return r[2] !== null;});
      if(!has3d){delete upd.z;}
      Plotly.restyle(gd, upd, spec.traces);
    }
    gd.on("plotly_sliderchange", function(e){
      var i = (gd.layout.sliders||[]).indexOf(e.slider); if(i < 0){i = e.slider._index || 0;}
      picks[i] = e.step._index; draw();
    });
  }
  function reveal(gd, spec){
    var full = spec.traces.map(function(t){var d = gd.data[t];
      return {x: d.x.slice(), y: d.y.slice(), text: d.text && d.text.slice ? d.text.slice() : d.text};});
    var timer = null;
    function show(k){
      var until = spec.ticks[k], upd = {x: [], y: [], text: []};
      spec.traces.forEach(function(t, j){
        var c = spec.clocks[j], f = full[j], n = 0; while(n < c.length && c[n] <= until){n++;}
        upd.x.push(f.x.slice(0, n)); upd.y.push(f.y.slice(0, n));
        upd.text.push(Array.isArray(f.text) ? f.text.slice(0, n) : f.text);
      });
      Plotly.restyle(gd, upd, spec.traces);
    }
    gd.on("plotly_sliderchange", function(e){show(e.step._index);});
    gd.on("plotly_buttonclicked", function(e){
      if(e.button.label.indexOf("play") < 0){return;}
      if(timer){clearInterval(timer); timer = null; return;}
      var k = 0; timer = setInterval(function(){
        Plotly.relayout(gd, {"sliders[0].active": k}); show(k); k++;
        if(k >= spec.ticks.length){clearInterval(timer); timer = null;}
      }, 120);
    });
  }
  function draw(el){
    var id = el.getAttribute("data-for"), fig = JSON.parse(el.textContent), gd = document.getElementById(id);
    return Plotly.newPlot(gd, fig.data || [], fig.layout || {}, {responsive: true, displaylogo: false}).then(function(){
      var spec = fig.layout && fig.layout.meta && fig.layout.meta.ftkit_static;
      if(spec && spec.kind === "grid"){grid(gd, spec);}
      if(spec && spec.kind === "reveal"){reveal(gd, spec);}
      gd.setAttribute("data-ready", "1");
    });
  }
  // one figure after the other, yielding between them: the text is readable at once, the page never freezes
  function all(){
    var queue = Array.prototype.slice.call(document.querySelectorAll("script.figure-data"));
    (function next(){ if(queue.length){ draw(queue.shift()).then(function(){ setTimeout(next, 0); }); } })();
  }
  if(document.readyState === "loading"){document.addEventListener("DOMContentLoaded", all);} else {all();}
})();
"""
