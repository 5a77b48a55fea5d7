#include "serve_page.h"

namespace spdit::cli {

const std::string& serve_page_html() {
  static const std::string html = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>spdit serve</title>
<style>
  body { font-family: sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  label { display: inline-block; margin: 0.3rem 1rem 0.3rem 0; }
  textarea { width: 100%; height: 4rem; }
  #status { margin: 0.8rem 0; min-height: 1.2rem; }
  #error { color: #b00; white-space: pre-wrap; }
  progress { width: 100%; }
  img, video { max-width: 100%; image-rendering: pixelated; border: 1px solid #ccc; }
</style>
</head>
<body>
<h1>spdit serve</h1>
<form id="form">
  <textarea id="prompt" placeholder="a red fox in the snow"></textarea><br>
  <label>size <input id="size" value="512x512" size="9"></label>
  <label>steps <input id="steps" type="number" min="1" placeholder="model's default" style="width:8rem"></label>
  <label>seed <input id="seed" type="number" min="0" value="0" style="width:7rem"></label>
  <span id="video-settings" hidden>
    <label>frames <input id="frames" type="number" min="1" step="4" value="17" style="width:5rem"></label>
    <label>fps <input id="fps" type="number" min="1" value="16" style="width:4rem"></label>
  </span>
  <button id="generate" type="submit">Generate</button>
</form>
<div id="status"></div>
<progress id="progress" value="0" max="1" hidden></progress>
<div id="error"></div>
<div id="pictures"></div>
<script>
const params = new URLSearchParams(location.search);
for (const name of ["prompt", "size", "steps", "seed", "frames", "fps"]) {
  if (params.has(name)) document.getElementById(name).value = params.get(name);
}
const headers = { "Content-Type": "application/json" };
if (params.has("key")) headers["Authorization"] = "Bearer " + params.get("key");
const status = document.getElementById("status");
const bar = document.getElementById("progress");

// A Wan2.1 server makes videos: /health says so once it is ready.
async function makes() {
  try {
    const h = await (await fetch("/health", { headers })).json();
    const kind = h.makes || "image";
    document.getElementById("video-settings").hidden = kind !== "video";
    return kind;
  } catch (e) { return "image"; }
}
makes();

async function poll(running) {
  while (running.on) {
    try {
      const p = await (await fetch("/v1/progress", { headers })).json();
      if (p.state === "running" && running.on) {
        bar.hidden = false;
        bar.max = p.steps || 1;
        bar.value = p.step;
        status.textContent = (p.kind === "video" ? "video: " : "") + "step " + p.step + " of " + p.steps + (p.n > 1 ? " (picture " + (p.image + 1) + " of " + p.n + ")" : "");
      } else if (running.on) {
        status.textContent = "waiting in the queue (" + p.queue + " ahead)";
      }
    } catch (e) {}
    await new Promise(r => setTimeout(r, 500));
  }
}

async function generate(event) {
  if (event) event.preventDefault();
  const body = { prompt: document.getElementById("prompt").value, size: document.getElementById("size").value,
                 seed: Number(document.getElementById("seed").value), response_format: "b64_json" };
  const steps = document.getElementById("steps").value;
  if (steps !== "") body.steps = Number(steps);
  const video = (await makes()) === "video";
  if (video) {
    body.frames = Number(document.getElementById("frames").value);
    body.fps = Number(document.getElementById("fps").value);
  }
  document.getElementById("error").textContent = "";
  document.getElementById("generate").disabled = true;
  status.textContent = "sent";
  const running = { on: true };
  poll(running);
  const started = performance.now();
  try {
    const res = await fetch(video ? "/v1/videos/generations" : "/v1/images/generations",
                            { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await res.json();
    if (!res.ok) throw new Error(res.status + ": " + (answer.error ? answer.error.message : JSON.stringify(answer)));
    const pictures = document.getElementById("pictures");
    pictures.textContent = "";
    for (const item of answer.data) {
      if (video) {
        const v = document.createElement("video");
        v.className = "result";
        v.controls = v.autoplay = v.loop = v.muted = true;
        v.setAttribute("src", "data:video/mp4;base64," + item.b64_json);
        pictures.appendChild(v);
        continue;
      }
      const img = document.createElement("img");
      img.className = "result";
      img.alt = body.prompt + " (seed " + item.seed + ")";
      img.src = "data:image/png;base64," + item.b64_json;
      pictures.appendChild(img);
    }
    status.textContent = "done in " + ((performance.now() - started) / 1000).toFixed(1) + " s";
  } catch (e) {
    document.getElementById("error").textContent = String(e.message || e);
    status.textContent = "failed";
  } finally {
    running.on = false;
    bar.hidden = true;
    document.getElementById("generate").disabled = false;
    document.body.dataset.finished = "1";
  }
}

document.getElementById("form").addEventListener("submit", generate);
if (params.get("run") === "1") generate();
</script>
</body>
</html>
)html";
  return html;
}

}  // namespace spdit::cli
