/* The viewer page: build a request, submit it, follow the job, show the heat-map.
 * Talks only to the public API: GET /models, GET /examples, POST /explain,
 * GET /jobs/{id}, DELETE /jobs/{id}. A job's page is shareable as /?job=ID.
 * The API key of the form goes out as X-API-Key on every call; it is kept in this tab's
 * sessionStorage only, never in the URL or localStorage.
 */
(function () {
  "use strict";

  const POLL_MS = 400;
  const RETRY_MS = 2000;
  const KEY_STORAGE = "textgenshap:api-key";
  const $ = (id) => document.getElementById(id);
  const state = {
    examples: [], jobId: null, documents: null, timer: null, retrying: false, awaitingKey: false,
  };

  /* ---- the API key: this tab's sessionStorage only ---- */

  function apiKey() {
    return $("api-key").value.trim();
  }

  function saveKey() {
    try {
      if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (err) {
      /* storage disabled: the key lives in the field until the page closes */
    }
  }

  function restoreKey() {
    try {
      $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (err) {
      /* storage disabled: start with an empty field */
    }
  }

  /* A job whose reading was refused for want of a key is followed again with the new key. */
  function keyChanged() {
    saveKey();
    if (state.awaitingKey && state.jobId) follow(state.jobId, null);
  }

  /* ---- errors in plain words ---- */

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function fieldName(loc) {
    return (loc || []).filter((p) => p !== "body").join(".");
  }

  /* "documents.0.text: Value error, must not be blank" -> "documents.0.text: must not be blank";
   * the gateway prefixes messages with the field path, FastAPI's own do not. */
  function fieldMessage(d) {
    const field = fieldName(d.loc);
    const msg = String(d.msg).replace(/(^|: )(Value error|Assertion failed), /, "$1");
    return field && !msg.startsWith(field + ":") ? field + ": " + msg : msg;
  }

  function describe(status, body, headers) {
    const detail = body && typeof body === "object" && "detail" in body ? body.detail : body;
    if (Array.isArray(detail)) {
      const items = detail.map(fieldMessage);
      return "The request was not accepted: " + items.join("; ") + ".";
    }
    if (status === 401) {
      return apiKey()
        ? "The API key was not accepted. Check it in the API key field above and try again."
        : "This server needs an API key. Enter it in the API key field above and try again.";
    }
    let text = typeof detail === "string" ? detail : (detail && detail.message) || "";
    if (status === 429) {
      const wait = headers && headers.get("Retry-After");
      text = "The service is busy (" + (text || "too many jobs") + ")" +
        (wait ? "; try again in " + wait + " s" : "; try again shortly");
    }
    return text || "The server answered " + status + ".";
  }

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (apiKey()) init.headers["X-API-Key"] = apiKey();
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "Could not reach the server (" + err.message + ").");
    }
    const text = await response.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      /* not JSON: keep the text */
    }
    if (!response.ok) throw new ApiError(response.status, describe(response.status, data, response.headers));
    return data;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  /* An API error in words; a 401 also puts the cursor in the API key field. */
  function reportError(err, prefix) {
    showError((prefix || "") + err.message);
    if (err.status === 401) $("api-key").focus();
  }

  /* ---- reading the form ---- */

  function parseDocumentsText(text) {
    const trimmed = text.trim();
    if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
      let data;
      try {
        data = JSON.parse(trimmed);
      } catch (err) {
        throw new Error("The documents look like JSON but do not parse: " + err.message);
      }
      return (Array.isArray(data) ? data : data.documents || []).map(toDocument);
    }
    return trimmed.split(/\n\s*\n/).filter((p) => p.trim()).map(paragraphToDocument);
  }

  function toDocument(d) {
    return typeof d === "string" ? { title: "", text: d } : { title: d.title || "", text: d.text };
  }

  function paragraphToDocument(paragraph) {
    const lines = paragraph.trim().split("\n");
    const match = /^title:\s*(.*)$/i.exec(lines[0]);
    if (match && lines.length > 1) return { title: match[1].trim(), text: lines.slice(1).join("\n").trim() };
    return { title: "", text: paragraph.trim() };
  }

  function documentsToText(docs) {
    return docs.map((d) => (d.title ? "Title: " + d.title + "\n" : "") + d.text).join("\n\n");
  }

  function buildRequest() {
    const documents = parseDocumentsText($("documents").value);
    const request = {
      question: $("question").value,
      documents,
      levels: $("levels").value.split(","),
      budget: Number($("budget").value),
    };
    if ($("model").value) request.model = $("model").value;
    return request;
  }

  /* ---- following a job ---- */

  function remember(jobId, documents) {
    try {
      sessionStorage.setItem("textgenshap:job:" + jobId, JSON.stringify(documents));
    } catch (err) {
      /* storage full or disabled: the page falls back to the result's own texts */
    }
  }

  function recall(jobId) {
    try {
      return JSON.parse(sessionStorage.getItem("textgenshap:job:" + jobId) || "null");
    } catch (err) {
      return null;
    }
  }

  function follow(jobId, documents) {
    clearTimeout(state.timer);
    state.jobId = jobId;
    state.awaitingKey = false;
    state.documents = documents || recall(jobId);
    const url = new URL(window.location.href);
    url.searchParams.set("job", jobId);
    window.history.replaceState(null, "", url);
    $("share").href = url.pathname + url.search;
    $("job").hidden = false;
    $("cancel").hidden = false;
    $("result").hidden = true;
    poll();
  }

  async function poll() {
    const jobId = state.jobId;
    let job;
    try {
      job = await api("GET", "/jobs/" + encodeURIComponent(jobId));
    } catch (err) {
      if (err.status === 0 || err.status >= 502) {
        // gateway restarting or overloaded: the job lives on in the queue, keep following
        showError(err.message + " Retrying\u2026");
        state.retrying = true;
        state.timer = setTimeout(poll, RETRY_MS);
        return;
      }
      const gone = err.status === 404 ? "No job " + jobId + " (it may have expired). " : "";
      state.awaitingKey = err.status === 401;
      reportError(err, gone);
      $("cancel").hidden = true;
      return;
    }
    if (jobId !== state.jobId) return; // a newer job replaced this one
    if (state.retrying) showError("");
    state.retrying = false;
    showProgress(job);
    if (job.status === "queued" || job.status === "running") {
      state.timer = setTimeout(poll, POLL_MS);
      return;
    }
    $("cancel").hidden = true;
    finish(job);
  }

  function showProgress(job) {
    const p = job.progress || { stage: job.status, done: 0, total: 0 };
    const bar = $("progress");
    if (p.total > 0) {
      bar.max = p.total;
      bar.value = Math.min(p.done, p.total);
    } else if (job.status === "succeeded") {
      bar.max = 1;
      bar.value = 1;
    } else {
      bar.removeAttribute("value"); // indeterminate
    }
    const counts = p.total > 0 ? " \u2014 " + p.done + " / " + p.total + " coalitions" : "";
    $("job-status").textContent =
      "Job " + job.job_id + " on " + job.model + ": " + job.status + ", stage " + p.stage + counts;
  }

  function finish(job) {
    if (job.status === "succeeded" && job.result) {
      showError("");
      $("result").hidden = false;
      window.HeatMap.mount($("result"), { documents: state.documents, result: job.result });
      $("result").scrollIntoView({ block: "start" });
      return;
    }
    if (job.status === "cancelled") {
      showError("The job was cancelled before it finished.");
      return;
    }
    const e = job.error || { type: "error", message: "no reason recorded" };
    showError("The job failed (" + e.type + "): " + e.message);
  }

  /* ---- wiring ---- */

  async function submit(event) {
    event.preventDefault();
    showError("");
    let request;
    try {
      request = buildRequest();
    } catch (err) {
      showError(err.message);
      return;
    }
    $("submit").disabled = true;
    try {
      const accepted = await api("POST", "/explain", request);
      remember(accepted.job_id, request.documents);
      follow(accepted.job_id, request.documents);
    } catch (err) {
      reportError(err);
    } finally {
      $("submit").disabled = false;
    }
  }

  async function cancel() {
    try {
      await api("DELETE", "/jobs/" + encodeURIComponent(state.jobId));
    } catch (err) {
      reportError(err);
    }
  }

  function pickExample() {
    const example = state.examples[Number($("example").value)];
    if (!example) return;
    $("question").value = example.question;
    $("documents").value = documentsToText(example.documents);
  }

  async function upload() {
    const file = $("upload").files[0];
    if (!file) return;
    const text = await file.text();
    try {
      const data = JSON.parse(text);
      if (data && data.question) $("question").value = data.question;
      const docs = Array.isArray(data) ? data : data.documents || [];
      $("documents").value = documentsToText(docs.map(toDocument));
    } catch (err) {
      $("documents").value = text; // plain text: paragraphs are documents
    }
  }

  async function loadModels() {
    const select = $("model");
    try {
      const view = await api("GET", "/models");
      const served = view.models.map((m) => m.name);
      // the default first, unless live workers serve other models and not it
      const chosen = served.length === 0 || served.includes(view.default) ? view.default : served[0];
      for (const name of new Set([...served, view.default])) {
        const label = name === view.default ? name + " (default)" : name;
        select.append(new Option(label, name, false, name === chosen));
      }
    } catch (err) {
      select.append(new Option("(server default)", ""));
      reportError(err, "Could not list the models: ");
    }
  }

  async function loadExamples() {
    try {
      state.examples = await api("GET", "/examples");
    } catch (err) {
      state.examples = [];
    }
    state.examples.forEach((e, i) => $("example").append(new Option(e.question, String(i))));
  }

  function start() {
    restoreKey();
    $("api-key").addEventListener("input", saveKey);
    $("api-key").addEventListener("change", keyChanged);
    $("explain-form").addEventListener("submit", submit);
    $("cancel").addEventListener("click", cancel);
    $("example").addEventListener("change", pickExample);
    $("upload").addEventListener("change", upload);
    loadModels();
    loadExamples();
    const jobId = new URLSearchParams(window.location.search).get("job");
    if (jobId) follow(jobId, null);
  }

  start();
})();
