/* The heat-map view of one ExplainResult, shared by the web viewer and the HTML report.
 *
 * HeatMap.mount(root, {documents, result}) draws the ranked answers, a level switch, a
 * legend, a detail line and every document with its features at the chosen level
 * coloured by their score for the chosen answer. Switching answer or level only
 * re-colours: no request is made. Feature offsets are Python string indices (code
 * points), so text is sliced as arrays of code points, never as UTF-16 strings.
 */
(function (global) {
  "use strict";

  // PuOr (ColorBrewer), colour-blind safe: orange = against the answer, purple = for it.
  const PALETTE = [
    [179, 88, 6],
    [241, 163, 64],
    [247, 247, 247],
    [153, 142, 195],
    [84, 39, 136],
  ];

  const SHOWN_ANSWERS = 8;

  function heatColour(t) {
    const x = (Math.max(-1, Math.min(1, t)) + 1) * 2; // 0..4 along the palette
    const i = Math.min(3, Math.floor(x));
    const f = x - i;
    const rgb = PALETTE[i].map((c, k) => Math.round(c + (PALETTE[i + 1][k] - c) * f));
    return "rgb(" + rgb.join(", ") + ")";
  }

  function inkFor(t) {
    return Math.abs(t) > 0.7 ? "#fff" : "#111";
  }

  function fmt(x) {
    return (x >= 0 ? "+" : "\u2212") + Math.abs(x).toFixed(3);
  }

  // A standard error is null where the estimator could not measure one (one sample).
  function plusMinus(stderr) {
    return stderr === null || stderr === undefined ? " (stderr unknown)" : " \u00b1 " + stderr.toFixed(3);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function normalise(text) {
    return String(text).toLowerCase().replace(/[\p{P}\s]+/gu, " ").trim();
  }

  function documentsFromResult(result) {
    const docs = result.levels[0].features.slice().sort((a, b) => a.document - b.document);
    return docs.map((f) => ({ title: "", text: f.text }));
  }

  function defaultAnswer(result) {
    const target = normalise(result.answer);
    const i = result.candidates.findIndex((c) => normalise(c.text) === target);
    return i >= 0 ? i : 0;
  }

  /* Pieces of one document: plain text between features, one piece per feature. */
  function segments(text, features) {
    const chars = Array.from(text);
    const sorted = features.slice().sort((a, b) => a.start - b.start);
    const out = [];
    let at = 0;
    for (const f of sorted) {
      if (f.start > at) out.push({ text: chars.slice(at, f.start).join(""), feature: null });
      out.push({ text: chars.slice(f.start, f.end).join(""), feature: f });
      at = Math.max(at, f.end);
    }
    if (at < chars.length) out.push({ text: chars.slice(at).join(""), feature: null });
    return out;
  }

  /* What each unit is: a feature listed at a coarser level too is that coarser unit
   * (an unrefined document at the sentence level is a whole document). */
  function unitKinds(result) {
    const kinds = new Map();
    for (const level of result.levels) {
      for (const f of level.features) {
        const key = f.document + ":" + f.start + ":" + f.end;
        if (!kinds.has(key)) kinds.set(key, level.level === "document" ? "whole document" : level.level);
      }
    }
    return kinds;
  }

  class View {
    constructor(root, data) {
      this.root = root;
      this.result = data.result;
      this.documents = data.documents || documentsFromResult(data.result);
      this.kinds = unitKinds(this.result);
      this.answer = defaultAnswer(this.result);
      this.level = this.result.levels[this.result.levels.length - 1].level;
      this.build();
      this.render();
    }

    unitName(f) {
      return this.kinds.get(f.document + ":" + f.start + ":" + f.end) || this.level;
    }

    levelResult() {
      return this.result.levels.find((l) => l.level === this.level);
    }

    build() {
      this.root.replaceChildren();
      this.root.classList.add("heatmap");
      this.answersBox = el("ol", { class: "answers", "aria-label": "Candidate answers" });
      this.levelsBox = el("div", { class: "levels", role: "group", "aria-label": "Level" });
      this.legend = this.buildLegend();
      this.detail = el("p", { class: "detail", "aria-live": "polite" });
      this.docsBox = el("div", { class: "documents" });
      const controls = el("div", { class: "controls" });
      controls.append(this.levelsBox, this.legend);
      // level switch, legend and detail line stay in view while the documents scroll
      const bar = el("div", { class: "view-bar" });
      bar.append(controls, this.detail);
      this.root.append(el("h2", {}, "Answers"), this.answersBox);
      const checks = this.result.checks || [];
      if (checks.length) {
        this.root.append(el("h2", {}, "Checks on the model"));
        const note = fastNote(this.result.stats);
        if (note) this.root.append(el("p", { class: "fast-note" }, note));
        this.root.append(checkList(checks));
      }
      this.root.append(bar, this.docsBox);
      this.buildAnswers();
      this.buildLevels();
      this.docsBox.addEventListener("keydown", (event) => this.step(event));
    }

    /* Left/Right arrows walk the highlighted spans, so word level needs no long Tab runs. */
    step(event) {
      const delta = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!delta || event.target.tagName !== "MARK") return;
      const all = Array.from(this.docsBox.querySelectorAll("mark.feat"));
      const next = all[all.indexOf(event.target) + delta];
      if (next) {
        next.focus();
        event.preventDefault();
      }
    }

    buildAnswers() {
      const count = this.result.candidates.length;
      this.result.candidates.forEach((c, i) => {
        const button = el("button", { type: "button", class: "answer", "data-index": String(i) });
        button.append(
          el("span", { class: "answer-text" }, c.text || "(empty answer)"),
          el("span", { class: "answer-score" }, "score " + fmt(c.score)),
          el("span", { class: "answer-freq" }, Math.round(c.frequency * 100) + "% of coalitions")
        );
        button.addEventListener("click", () => this.select(i));
        const item = el("li");
        item.hidden = i >= SHOWN_ANSWERS && i !== this.answer;
        item.append(button);
        this.answersBox.append(item);
      });
      if (count > SHOWN_ANSWERS) this.answersBox.append(this.moreAnswers(count));
    }

    /* Small models can give dozens of rare answers: show the top few, the rest on demand. */
    moreAnswers(count) {
      const button = el("button", { type: "button", class: "more-answers" });
      button.textContent = "Show all " + count + " answers";
      button.addEventListener("click", () => {
        for (const item of this.answersBox.querySelectorAll("li[hidden]")) item.hidden = false;
        button.parentElement.remove();
      });
      const item = el("li");
      item.append(button);
      return item;
    }

    buildLevels() {
      this.levelsBox.append(el("span", { class: "levels-label" }, "Level:"));
      for (const l of this.result.levels) {
        const button = el("button", { type: "button", class: "level", "data-level": l.level });
        button.textContent = l.level;
        button.addEventListener("click", () => this.setLevel(l.level));
        this.levelsBox.append(button);
      }
    }

    buildLegend() {
      const legend = el("div", { class: "legend", "aria-label": "Colour legend" });
      this.legendMin = el("span", { class: "legend-min" });
      this.legendMax = el("span", { class: "legend-max" });
      const bar = el("span", { class: "legend-bar", "aria-hidden": "true" });
      const stops = [-1, -0.5, 0, 0.5, 1].map(heatColour).join(", ");
      bar.style.background = "linear-gradient(to right, " + stops + ")";
      legend.append(this.legendMin, bar, this.legendMax);
      return legend;
    }

    select(i) {
      this.answer = i;
      this.render();
    }

    setLevel(level) {
      this.level = level;
      this.render();
    }

    render() {
      const features = this.levelResult().features;
      const scale = Math.max(0, ...features.map((f) => Math.abs(f.score[this.answer]))) || 1;
      this.scale = scale;
      this.legendMin.textContent = fmt(-scale) + " against";
      this.legendMax.textContent = fmt(scale) + " for the answer";
      this.markPressed(this.answersBox, ".answer", (b) => Number(b.dataset.index) === this.answer);
      this.markPressed(this.levelsBox, ".level", (b) => b.dataset.level === this.level);
      const answer = this.result.candidates[this.answer];
      this.detail.textContent =
        "Showing " + this.level + " scores for \u201c" + (answer ? answer.text : "") +
        "\u201d. Hover or focus a highlighted span (Tab, then \u2190 \u2192) for its " +
        "score \u00b1 standard error.";
      this.docsBox.replaceChildren(...this.documents.map((d, i) => this.renderDocument(d, i)));
    }

    markPressed(box, selector, isOn) {
      for (const b of box.querySelectorAll(selector)) {
        b.setAttribute("aria-pressed", String(isOn(b)));
      }
    }

    renderDocument(doc, index) {
      const article = el("article", { class: "doc", "data-document": String(index) });
      const rank = this.result.passage_ranking.indexOf(index) + 1;
      const head = el("h3", { class: "doc-head" }, "Document " + (index + 1));
      if (doc.title) head.append(el("span", { class: "doc-title" }, " \u2014 " + doc.title));
      const tied = (this.result.tied_passages || []).some((group) => group.includes(index));
      if (rank > 0) head.append(el("span", { class: "doc-rank" }, "rank " + rank + (tied ? " (tied)" : "")));
      const whole = this.result.levels[0].features.find((f) => f.document === index);
      if (whole) {
        const label = fmt(whole.score[this.answer]) + plusMinus(whole.stderr[this.answer]);
        head.append(el("span", { class: "doc-score" }, "document score " + label));
      }
      const body = el("p", { class: "doc-text" });
      const features = this.levelResult().features.filter((f) => f.document === index);
      for (const piece of segments(doc.text, features)) {
        body.append(piece.feature ? this.renderFeature(piece) : piece.text);
      }
      article.append(head, body);
      return article;
    }

    renderFeature(piece) {
      const f = piece.feature;
      const score = f.score[this.answer];
      const stderr = f.stderr[this.answer];
      const t = score / this.scale;
      const label = fmt(score) + plusMinus(stderr);
      const mark = el("mark", {
        class: "feat" + (stderr !== null && Math.abs(score) <= stderr ? " uncertain" : ""),
        tabindex: "0",
        "data-document": String(f.document),
        "data-start": String(f.start),
        "data-end": String(f.end),
        "data-score": String(score),
        "data-stderr": String(stderr),
        title: "score " + label + " (" + this.unitName(f) + ")",
      }, piece.text);
      mark.style.backgroundColor = heatColour(t);
      mark.style.color = inkFor(t);
      const show = () => this.showDetail(f, label);
      mark.addEventListener("mouseenter", show);
      mark.addEventListener("focus", show);
      return mark;
    }

    showDetail(f, label) {
      const text = piecePreview(f.text);
      const answer = this.result.candidates[this.answer];
      this.detail.textContent =
        "Document " + (f.document + 1) + ", " + this.unitName(f) + " \u201c" + text +
        "\u201d: score " + label + " for \u201c" + (answer ? answer.text : "") + "\u201d";
    }
  }

  function piecePreview(text) {
    const chars = Array.from(text.trim());
    return chars.length > 80 ? chars.slice(0, 77).join("") + "\u2026" : chars.join("");
  }

  /* The ranking's top passages removed, or alone: what the model answered then. */
  function checkList(checks) {
    const list = el("ul", { class: "checks", "aria-label": "Checks of the passage ranking" });
    for (const c of checks) {
      const docs = c.documents.map((d) => d + 1).join(", ");
      const where = (c.kind === "remove" ? "Without documents " : "Only documents ") + docs;
      const moved = c.logprob_drop === null ? "" : ", log p(answer) " + fmt(-c.logprob_drop);
      const verdict = c.answer_changed ? "answer changed" : "same answer";
      const item = el("li", { class: "check " + c.kind });
      item.textContent = where + ": \u201c" + c.answer + "\u201d (" + verdict + moved + ")";
      list.append(item);
    }
    return list;
  }

  /* A fast job's checks ran on the exact model (worded as contract.results.fast_note). */
  function fastNote(stats) {
    const agreed = stats && stats.fast_agreement;
    if (!agreed) return "";
    const same = Math.round(agreed.answers_agree * agreed.coalitions);
    return "Fast mode (approximate) scored the passages; these checks ran on the exact model, " +
      "where fast mode gave the same answer on " + same + " of their " + agreed.coalitions +
      " contexts.";
  }

  function mount(root, data) {
    return new View(root, data);
  }

  global.HeatMap = { mount, heatColour, segments, documentsFromResult };
})(window);
