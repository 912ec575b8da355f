// The chat page: upload an image or a video, ask, watch the answer stream, continue the conversation.
// Plain browser JavaScript (no build step). It speaks the same OpenAI-compatible API as any client:
// media go to POST /v1/uploads once and are then referenced as upload://<id> in every turn, so a
// multi-turn chat does not re-send the file (and the server's feature cache avoids re-encoding it).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  model: null,
  messages: [],          // the OpenAI-format history sent with every turn
  pending: null,         // {kind, url, objectUrl, name}: media attached to the next question
  controller: null,      // AbortController of the answer being streamed
};

function headers(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function setStatus(text) { $("status").textContent = text; }

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return `${response.status}: ${body.error.message}`;
  } catch (_) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

async function connect() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (response.status === 503) {
      $("model").textContent = "model loading…";
      setTimeout(connect, 2000);
      return;
    }
    if (!response.ok) {
      $("model").textContent = response.status === 401 ? "enter the API key" : await errorMessage(response);
      return;
    }
    const body = await response.json();
    state.model = body.data[0].id;
    $("model").textContent = `model: ${state.model}`;
    $("send").disabled = false;
  } catch (err) {
    $("model").textContent = `cannot reach the server (${err})`;
    setTimeout(connect, 3000);
  }
}

function mediaElement(kind, src) {
  const el = document.createElement(kind === "video" ? "video" : "img");
  el.src = src;
  if (kind === "video") { el.controls = true; el.muted = true; }
  return el;
}

function addMessage(role, text, media) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  if (media) div.appendChild(mediaElement(media.kind, media.objectUrl));
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.appendChild(body);
  $("chat").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function attach(file) {
  const kind = file.type.startsWith("video/") ? "video" : "image";
  $("media-status").textContent = `uploading ${file.name}…`;
  $("send").disabled = true;
  try {
    const response = await fetch("/v1/uploads", {
      method: "POST",
      headers: headers({ "Content-Type": file.type || "application/octet-stream", "X-Filename": file.name }),
      body: file,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const info = await response.json();
    const objectUrl = URL.createObjectURL(file);
    state.pending = { kind, url: info.url, objectUrl, name: file.name };
    $("preview").replaceChildren(mediaElement(kind, objectUrl));
    $("media-status").textContent = `${file.name} attached (${Math.round(info.bytes / 1024)} KiB)`;
  } catch (err) {
    state.pending = null;
    $("media-status").textContent = `upload failed: ${err.message}`;
  } finally {
    $("send").disabled = state.model === null;
  }
}

function userContent(question, media) {
  if (!media) return question;
  if (media.kind === "image") return [{ type: "image_url", image_url: { url: media.url } }, { type: "text", text: question }];
  const video = { url: media.url };
  // Empty fields leave the sampling to the server (the checkpoint's fps, the server's frame limit).
  if (Number($("fps").value) > 0) video.fps = Number($("fps").value);
  if (Number($("max-frames").value) >= 1) video.max_frames = Math.floor(Number($("max-frames").value));
  return [{ type: "video_url", video_url: video }, { type: "text", text: question }];
}

async function* serverSentEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || state.controller || state.model === null) return;
  const media = state.pending;
  const userMessage = { role: "user", content: userContent(question, media) };
  state.messages.push(userMessage);
  addMessage("user", question, media);
  $("question").value = "";
  state.pending = null;
  $("preview").replaceChildren();
  $("media-status").textContent = "";
  $("media").value = "";

  const bubble = addMessage("assistant", "");
  bubble.dataset.state = "streaming";
  const text = bubble.querySelector(".text");
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("thinking…");
  let answer = "";
  let usage = null;
  let finish = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({
        model: state.model,
        messages: state.messages,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: Number($("max-tokens").value) || 256,
      }),
      signal: state.controller.signal,
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    for await (const data of serverSentEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) {
          answer += choice.delta.content;
          text.textContent = answer;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    state.messages.push({ role: "assistant", content: answer });
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = usage
      ? `${usage.completion_tokens} tokens · prompt ${usage.prompt_tokens} (${usage.prompt_tokens_details.visual_tokens} visual) · ${finish}`
      : (finish || "");
    bubble.appendChild(meta);
    bubble.dataset.state = "done";
    setStatus("");
  } catch (err) {
    // Take the failed turn out of the history so that the question can be asked again.
    state.messages.pop();
    if (media) state.pending = media;
    bubble.classList.add("error");
    text.textContent = err.name === "AbortError" ? `${answer} [stopped]` : `Error: ${err.message}`;
    bubble.dataset.state = "error";
    setStatus("");
  } finally {
    state.controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

function newChat() {
  if (state.controller) state.controller.abort();
  state.messages = [];
  state.pending = null;
  $("chat").replaceChildren();
  $("preview").replaceChildren();
  $("media-status").textContent = "";
  $("media").value = "";
}

// ---------------------------------------------------------------------------------------------------
// The Live tab: webcam (getUserMedia) or a video file, drawn to a canvas at the checkpoint's fps and sent
// as JPEG over the /v1/live WebSocket (docs/serving.md, "Live sessions"); what the model says is shown as
// it comes, and questions are asked over the same socket.

const LIVE_MAX_SIDE = 640;  // frames are scaled down to at most this many pixels on their longer side
const live = {
  ws: null, stream: null, objectUrl: null, timer: null, source: null,
  fps: 1, t0: 0, lastT: -1, sent: 0, results: 0, answer: null,
};

function showTab(name) {
  for (const tab of ["chat", "live"]) {
    $(`${tab}-tab`).hidden = tab !== name;
    $(`tab-${tab}`).classList.toggle("active", tab === name);
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
  }
}

function liveStatus(text) { $("live-status").textContent = text; }

function liveEntry(kind, text, when) {
  const div = document.createElement("div");
  div.className = `live-entry ${kind}`;
  if (when !== undefined) {
    const time = document.createElement("span");
    time.className = "when";
    time.textContent = `${when.toFixed(1)} s`;
    div.appendChild(time);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.appendChild(body);
  $("live-log").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function liveCounters(last) {
  const el = $("live-frames");
  el.dataset.sent = String(live.sent);
  el.dataset.results = String(live.results);
  const tail = last ? ` · last frame ${last.t.toFixed(1)} s: ${last.kept_tokens}/${last.total_tokens} visual tokens kept` : "";
  el.textContent = `${live.sent} frames sent, ${live.results} processed${tail}`;
}

function liveMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch (_) { return; }
  if (msg.type === "ready") {
    live.fps = msg.fps > 0 ? msg.fps : 1;
    liveStatus(`live: ${msg.model}, ${live.fps} frame/s`);
    startCapture();
  } else if (msg.type === "frame") {
    live.results += 1;
    liveCounters(msg);
    if (msg.spoke && msg.text) liveEntry("speech", msg.text, msg.t);
  } else if (msg.type === "delta") {
    if (!live.answer) live.answer = liveEntry("answer", "");
    live.answer.querySelector(".text").textContent += msg.text;
  } else if (msg.type === "answer_end") {
    if (!live.answer) live.answer = liveEntry("answer", "");
    live.answer.dataset.state = "done";
    live.answer = null;
    $("live-send").disabled = false;
  } else if (msg.type === "error") {
    liveEntry("error", `Error: ${msg.message}`);
  }
}

function liveConnect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/v1/live`);
  ws.binaryType = "arraybuffer";
  // The key goes in the first message (browsers cannot set headers on a WebSocket; a URL would be logged).
  ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "auth", api_key: $("api-key").value.trim() })));
  ws.addEventListener("message", liveMessage);
  ws.addEventListener("close", (event) => {
    if (live.ws !== ws) return;
    liveStop(event.code === 1000 || event.code === 1005 ? "stopped" : `closed: ${event.reason || event.code}`);
  });
  live.ws = ws;
  live.sent = 0;
  live.results = 0;
  live.lastT = -1;
  liveCounters(null);
  liveStatus("connecting…");
}

function startCapture() {
  const video = $("live-video");
  live.t0 = performance.now();
  clearInterval(live.timer);
  live.timer = setInterval(captureFrame, 1000 / live.fps);
  video.play().catch(() => { /* a file that cannot play: nothing is sent */ });
}

function captureFrame() {
  const video = $("live-video");
  const ws = live.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN || video.readyState < 2 || !video.videoWidth) return;
  if (live.sent - live.results >= 2) return;  // the model is behind: skip this frame rather than queue it
  if (live.source === "file" && video.ended) { liveStop("the video ended"); return; }
  const t = live.source === "file" ? video.currentTime : (performance.now() - live.t0) / 1000;
  if (t <= live.lastT) return;
  live.lastT = t;
  const canvas = $("live-canvas");
  const scale = Math.min(1, LIVE_MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  canvas.toBlob((blob) => {
    if (!blob || live.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: "frame", t }));  // the header and its bytes, back to back
    ws.send(blob);
    live.sent += 1;
    liveCounters(null);
  }, "image/jpeg", 0.85);
}

async function liveCamera() {
  liveStop();
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    liveStatus(`no camera: ${err.message || err.name}`);
    return;
  }
  $("live-video").srcObject = live.stream;
  live.source = "camera";
  $("live-stop").disabled = false;
  liveConnect();
}

function liveFile(file) {
  liveStop();
  live.objectUrl = URL.createObjectURL(file);
  const video = $("live-video");
  video.srcObject = null;
  video.src = live.objectUrl;
  live.source = "file";
  $("live-stop").disabled = false;
  liveConnect();
}

function liveStop(reason) {
  clearInterval(live.timer);
  live.timer = null;
  const ws = live.ws;
  live.ws = null;
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
  if (live.stream) live.stream.getTracks().forEach((track) => track.stop());
  live.stream = null;
  const video = $("live-video");
  video.pause();
  video.srcObject = null;
  if (live.objectUrl) { video.removeAttribute("src"); URL.revokeObjectURL(live.objectUrl); live.objectUrl = null; }
  live.answer = null;
  $("live-send").disabled = false;
  $("live-stop").disabled = true;
  if (reason) liveStatus(reason);
}

function liveAsk(event) {
  event.preventDefault();
  const question = $("live-question").value.trim();
  if (!question) return;
  if (!live.ws || live.ws.readyState !== WebSocket.OPEN) { liveStatus("start the webcam or a video file first"); return; }
  if (live.answer) return;  // one question at a time
  liveEntry("question", question);
  live.answer = liveEntry("answer", "");
  live.answer.dataset.state = "streaming";
  $("live-send").disabled = true;
  live.ws.send(JSON.stringify({ type: "ask", text: question, max_tokens: Math.floor(Number($("live-max-tokens").value)) || 128 }));
  $("live-question").value = "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("tab-chat").addEventListener("click", () => showTab("chat"));
  $("tab-live").addEventListener("click", () => showTab("live"));
  $("live-camera").addEventListener("click", liveCamera);
  $("live-file").addEventListener("change", () => { if ($("live-file").files[0]) liveFile($("live-file").files[0]); });
  $("live-stop").addEventListener("click", () => liveStop("stopped"));
  $("live-ask").addEventListener("submit", liveAsk);

  $("api-key").value = localStorage.getItem("videollama3-api-key") || "";
  $("key-form").addEventListener("submit", (e) => e.preventDefault());
  $("api-key").addEventListener("change", () => {
    localStorage.setItem("videollama3-api-key", $("api-key").value.trim());
    connect();
  });
  $("send").disabled = true;
  $("media").addEventListener("change", () => { if ($("media").files[0]) attach($("media").files[0]); });
  $("composer").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("new-chat").addEventListener("click", newChat);
  connect();
});
