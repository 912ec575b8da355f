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

document.addEventListener("DOMContentLoaded", () => {
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
