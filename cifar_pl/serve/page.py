"""The page of ``GET /``: drop one or more photos (or choose them), each is sent to ``POST /predict?cam=1`` and shown
with its top classes and, for a net with a GAP head, its class-activation map laid over it. One file, no
external scripts, styles or fonts (the page works on a machine with no internet)."""

from __future__ import annotations

import html
import json

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cifar_pl: __TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
 h1 { font-size: 20px; margin: 0 0 4px; } .sub { color: #666; margin-bottom: 16px; }
 #drop { border: 2px dashed #999; border-radius: 10px; padding: 28px; text-align: center; background: #fff; }
 #drop.over { border-color: #2a7; background: #efe; }
 #results { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 20px; }
 .result { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 10px; width: 340px; }
 .result img { max-width: 320px; max-height: 320px; display: block; margin: 0 auto 8px; border-radius: 4px; }
 .name { font-size: 12px; color: #666; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
 .row { display: flex; align-items: center; gap: 8px; margin: 3px 0; }
 .label { width: 110px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
 .bar { flex: 1; background: #eee; height: 12px; border-radius: 6px; overflow: hidden; }
 .bar span { display: block; height: 100%; background: #2a7; }
 .pct { width: 52px; text-align: right; font-variant-numeric: tabular-nums; }
 .error { color: #b00; } .note { font-size: 12px; color: #888; }
</style></head>
<body>
<h1>__TITLE__</h1>
<div class="sub">__SUBTITLE__</div>
<div id="drop">Drop photos here, or <input id="files" type="file" accept="image/*" multiple></div>
<div id="results"></div>
<script>
const INFO = __INFO__;
const results = document.getElementById("results");
function card(file) {
  const div = document.createElement("div");
  div.className = "result"; div.dataset.state = "pending";
  div.innerHTML = '<div class="name"></div><div class="note">predicting...</div>';
  div.querySelector(".name").textContent = file.name;
  results.appendChild(div);
  return div;
}
function show(div, file, answer) {
  div.innerHTML = "";
  const img = document.createElement("img");
  img.src = answer.cam || URL.createObjectURL(file);
  img.alt = answer.cam ? "class-activation map over " + file.name : file.name;
  const name = document.createElement("div"); name.className = "name"; name.textContent = file.name;
  div.append(img, name);
  answer.predictions.forEach((p, i) => {
    const row = document.createElement("div"); row.className = "row" + (i === 0 ? " top1" : "");
    const label = document.createElement("div"); label.className = "label"; label.textContent = p.class;
    const bar = document.createElement("div"); bar.className = "bar";
    const fill = document.createElement("span"); fill.style.width = (100 * p.probability).toFixed(1) + "%";
    bar.appendChild(fill);
    const pct = document.createElement("div"); pct.className = "pct";
    pct.textContent = (100 * p.probability).toFixed(1) + "%";
    row.append(label, bar, pct); div.appendChild(row);
  });
  const note = document.createElement("div"); note.className = "note";
  note.textContent = answer.input + (answer.cam ? "; map of the top class" : "");
  div.appendChild(note);
  div.dataset.state = "done";
}
async function send(file) {
  const div = card(file);
  const form = new FormData(); form.append("file", file);
  try {
    const r = await fetch("predict?k=" + INFO.top_k + "&cam=1", { method: "POST", body: form });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || r.statusText);
    show(div, file, answer);
  } catch (e) {
    div.querySelector(".note").textContent = "";
    const err = document.createElement("div"); err.className = "error"; err.textContent = String(e.message || e);
    div.appendChild(err); div.dataset.state = "error";
  }
}
function take(files) { for (const f of files) send(f); }
const drop = document.getElementById("drop");
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files); });
document.getElementById("files").addEventListener("change", e => take(e.target.files));
</script>
</body></html>
"""


def page(info: dict) -> str:
    """The page for a served net; ``info`` is what ``GET /info`` answers (net, classes, image_size, top_k)."""
    classes = info["classes"]
    shown = ", ".join(classes[:12]) + (f", ... ({len(classes)} in all)" if len(classes) > 12 else "")
    subtitle = f"{info['net']}, {info['image_size']}x{info['image_size']} input; classes: {shown}"
    # the info goes into a <script>: as JSON with '<' escaped, so a class name cannot close the script element
    data = json.dumps({"top_k": info["top_k"]}).replace("<", "\\u003c")
    return (
        PAGE.replace("__TITLE__", html.escape(f"{info['net']} classifier"))
        .replace("__SUBTITLE__", html.escape(subtitle))
        .replace("__INFO__", data)
    )
