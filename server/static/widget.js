/*! nenqa chat widget, part 2 of 2. Embed: <script src="https://HOST/widget.js"
 * data-api="https://HOST" data-lang="zh"></script>. Attributes, events and sizes: docs/widget.md.
 * No dependencies. Drawing answers (widgetRender) is part 1, widget_render.js, served ahead of
 * this file. Every text goes through textContent; no markup from a server or user is parsed. */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script) return;
  const attr = (name) => script.getAttribute("data-" + name);
  const api = (attr("api") || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  const lang = /^zh/i.test(attr("lang") || navigator.language || "") ? "zh" : "en";
  const answerLang = attr("lang") ? lang : null; // sent as "lang" only when the page chose it
  const apiKey = attr("api-key");
  const pageLayout = attr("layout") === "page";
  const storeKey = "nenqa-chat:" + api;
  const maxHistory = 12; // earlier messages sent as context; keeps requests far below 64 KB

  const T = {
    en: {
      open: "Ask the NEN review",
      title: "NEN drug-trial review assistant",
      close: "Close",
      reset: "New conversation",
      label: "Your question",
      placeholder: "Ask about NEN drug trials… (Enter sends, Shift+Enter new line)",
      send: "Send",
      cancel: "Cancel",
      you: "You:",
      bot: "Assistant:",
      log: "Conversation",
      pending: "Searching the review…",
      synthesized: "Summary (checked against the quotes above):",
      abstained: "No answer in the review",
      partial: "Incomplete answer",
      cancelled: "Request cancelled.",
      cite: "Reference {n}",
      citePassage: "Passage: {s}",
      passage: "Passage without a reference number",
      section: "Section: {s}",
      quotes: "Quoted by this answer",
      original: "Chinese original: ",
      reveal: "Translated quote: click to show the Chinese original",
      back: "Back to the conversation",
      intro: "Ask in Chinese or English about drug trials in neuroendocrine neoplasms.",
      foot: "Answers quote the review with its reference numbers. Check the source before clinical use.",
      down: "Cannot reach the server at {api}. It may be down or unreachable; try again later.",
      e401: "The server refused the request (401): a valid API key is needed.",
      e429: "Too many requests (429). Try again in {s} seconds.",
      e429any: "Too many requests (429). Try again in a moment.",
      e4xx: "The server could not answer ({status}): {detail}",
      e5xx: "The server failed to answer ({status}). Try again later.",
      e503: "The server is still starting up (503). Try again in {s} seconds.",
      cut: "The connection broke before the answer was complete. Try again.",
      refFail: "This reference could not be loaded.",
      table: "Evidence table (scrolls sideways)",
    },
    zh: {
      open: "NEN 综述问答",
      title: "神经内分泌肿瘤药物试验综述问答",
      close: "关闭",
      reset: "新对话",
      label: "您的问题",
      placeholder: "请输入关于 NEN 药物试验的问题……（Enter 发送，Shift+Enter 换行）",
      send: "发送",
      cancel: "取消",
      you: "您：",
      bot: "助手：",
      log: "对话",
      pending: "正在检索综述……",
      synthesized: "概括（已与上方引文核对）：",
      abstained: "综述中没有答案",
      partial: "回答不完整",
      cancelled: "已取消请求。",
      cite: "参考文献 {n}",
      citePassage: "段落：{s}",
      passage: "无参考文献编号的段落",
      section: "章节：{s}",
      quotes: "本回答引用的原文",
      original: "原文：",
      reveal: "译文：点击显示原文",
      back: "返回对话",
      intro: "可用中文或英文提问神经内分泌肿瘤药物试验的相关问题。",
      foot: "回答引用综述原文及其参考文献编号。用于临床前请核对原文。",
      down: "无法连接服务器 {api}。服务器可能已停止或不可达，请稍后再试。",
      e401: "服务器拒绝了请求（401）：需要有效的 API 密钥。",
      e429: "请求过于频繁（429）。请在 {s} 秒后重试。",
      e429any: "请求过于频繁（429）。请稍后重试。",
      e4xx: "服务器无法回答（{status}）：{detail}",
      e5xx: "服务器处理失败（{status}）。请稍后再试。",
      e503: "服务器仍在启动（503）。请在 {s} 秒后重试。",
      cut: "回答尚未完成时连接中断，请重试。",
      refFail: "无法加载该参考文献。",
      table: "证据表（可横向滚动）",
    },
  }[lang];
  const fmt = (text, values) => text.replace(/\{(\w+)\}/g, (_, k) => String(values[k]));

  const CSS = `
:host(.page){display:block;height:100%}
.wrap{all:initial;display:block;font:15px/1.5 system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",
 "PingFang SC","Microsoft YaHei",sans-serif;color:#1b1f24}
.wrap *{box-sizing:border-box}[hidden]{display:none!important}button,textarea{font:inherit}button{cursor:pointer}
:focus-visible{outline:3px solid #0b5394;outline-offset:2px}header :focus-visible{outline-color:#fff}
.launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;background:#0b5394;color:#fff;
 border:0;border-radius:24px;padding:12px 20px;box-shadow:0 2px 10px rgba(0,0,0,.3)}
.panel{position:fixed;right:20px;bottom:84px;z-index:2147483000;display:flex;flex-direction:column;
 width:min(430px,calc(100vw - 40px));height:min(640px,calc(100vh - 104px));background:#fff;
 border:1px solid #b7c2ce;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);overflow:hidden}
.wrap.page{height:100%}
.page .panel{position:static;width:100%;height:100%;border:0;border-radius:0;box-shadow:none}
header{display:flex;align-items:center;gap:8px;padding:10px 12px;background:#0b5394;color:#fff}
h1,h2{flex:1;margin:0;font-size:16px}
header button{background:none;color:#fff;border:1px solid #fff;border-radius:6px;padding:3px 10px}
.log,.ref{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:10px}
.msg{max-width:92%;margin:0;padding:8px 12px;border-radius:10px;white-space:pre-wrap;
 overflow-wrap:anywhere}
.user{align-self:flex-end;background:#0b5394;color:#fff}.assistant{align-self:flex-start;background:#eef2f6;color:#1b1f24}
.abstained{background:#fff6d6;border:1px solid #8a6d00}.badge{display:block;font-weight:600;font-size:13px;color:#5c4600}
.error{align-self:stretch;background:#fdecec;color:#8b1a1a;border:1px solid #d9a3a3}
.info{align-self:center;color:#4a5560;font-size:13px}.cite{margin:0 1px;padding:0 4px;border:1px solid #8fb0d8;border-radius:4px;background:#dde9f7;
 color:#0b4a85;font-size:13px;line-height:1.4}
.ref h3,.ref h4{margin:0;font-size:15px}.ref p{margin:0}.ref ul{margin:0;padding-left:18px}
blockquote{margin:4px 0;padding:4px 10px;border-left:3px solid #0b5394;background:#f5f7fa}
.sec{display:block;font-size:13px;color:#4a5560}.quote{all:unset;display:block;cursor:pointer}.quote:focus-visible{outline:3px solid #0b5394}
.orig{display:block;margin-top:4px;font-size:14px;color:#2f3a45}
form{display:flex;gap:8px;padding:10px 12px;border-top:1px solid #d5dbe2}
textarea{flex:1;min-height:44px;max-height:140px;resize:vertical;padding:8px;color:#1b1f24;
 background:#fff;border:1px solid #6b7785;border-radius:8px}
textarea:disabled{background:#eef1f4;color:#4a5560}
.primary{background:#0b5394;color:#fff;border:0;border-radius:8px;padding:0 16px}
.secondary{background:#fff;color:#0b5394;border:1px solid #0b5394;border-radius:8px;padding:0 14px}
.foot{margin:0;padding:0 12px 8px;font-size:12px;color:#4a5560}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}`;

  const { el } = widgetRender;
  const { quoteBlock, writer } = widgetRender.renderer(T, fmt, showReference);

  const host = document.createElement("nenqa-chat");
  const root = host.attachShadow({ mode: "open" });
  if (pageLayout) host.className = "page";
  const wrap = el("div", {
    class: pageLayout ? "wrap page" : "wrap",
    lang: lang === "zh" ? "zh-CN" : "en",
  });
  const launcher = pageLayout
    ? null
    : el("button", {
        class: "launcher",
        type: "button",
        "aria-expanded": "false",
        "aria-controls": "panel",
        text: T.open,
      });
  const closeButton = pageLayout
    ? null
    : el("button", { class: "close", type: "button", text: "×", "aria-label": T.close });
  const resetButton = el("button", { class: "reset", type: "button", text: T.reset });
  const log = el("div", {
    class: "log",
    role: "log",
    "aria-live": "polite",
    "aria-label": T.log,
    tabindex: "0",
  });
  const refTitle = el("h3", { id: "ref-title", tabindex: "-1" });
  const refEntry = el("p");
  const refQuotesTitle = el("h4", { text: T.quotes });
  const refQuotes = el("ul");
  const backButton = el("button", { class: "secondary back", type: "button", text: T.back });
  const refView = el("section", { class: "ref", "aria-labelledby": "ref-title", hidden: true }, [
    ...[refTitle, refEntry, refQuotesTitle, refQuotes],
    el("div", {}, [backButton]),
  ]);
  const input = el("textarea", { id: "q", rows: "2", maxlength: "2000" });
  input.placeholder = T.placeholder;
  const sendButton = el("button", { class: "primary send", type: "submit", text: T.send });
  const cancelButton = el("button", { class: "secondary cancel", type: "button", text: T.cancel });
  cancelButton.hidden = true;
  const form = el("form", {}, [
    ...[el("label", { class: "sr", for: "q", text: T.label }), input, sendButton, cancelButton],
  ]);
  const panel = el(
    "section",
    {
      id: "panel",
      class: "panel",
      role: pageLayout ? "region" : "dialog",
      "aria-labelledby": "title",
      hidden: !pageLayout,
    },
    [
      el("header", {}, [
        el(pageLayout ? "h1" : "h2", { id: "title", text: T.title }),
        resetButton,
        closeButton,
      ]),
      log,
      refView,
      form,
      el("p", { class: "foot", text: T.foot }),
    ],
  );
  root.append(el("style", { text: CSS + widgetRender.css }), wrap);
  wrap.append(...[launcher, panel].filter(Boolean));

  let history = [];
  let controller = null;
  let refOpener = null;

  const emit = (name, detail) =>
    host.dispatchEvent(new CustomEvent("nenqa:" + name, { bubbles: true, composed: true, detail }));
  const save = () => {
    try {
      sessionStorage.setItem(storeKey, JSON.stringify(history));
    } catch (_) {
      /* storage off (private mode, sandbox): the conversation lives in memory only */
    }
  };
  const load = () => {
    try {
      return JSON.parse(sessionStorage.getItem(storeKey) || "[]");
    } catch (_) {
      return [];
    }
  };
  const headers = (json) => {
    const h = { Accept: json ? "text/event-stream" : "application/json" };
    if (json) h["Content-Type"] = "application/json";
    if (apiKey) h.Authorization = "Bearer " + apiKey;
    return h;
  };
  const scrollDown = () => {
    log.scrollTop = log.scrollHeight;
  };

  function addMessage(role, text, message = {}) {
    const body = el("div", { class: "body" });
    const node = el("div", { class: "msg " + role }, [
      el("span", { class: "sr", text: role === "user" ? T.you : T.bot }),
      body,
    ]);
    if (role === "user") body.textContent = text;
    else if (text) {
      const out = writer(body, message);
      out.write(text);
      out.end();
    }
    if (message.abstained) markBadge(node, T.abstained, "abstained");
    log.append(node);
    scrollDown();
    return { node, body };
  }

  function markBadge(node, text, cls) {
    node.classList.add(cls);
    node.insertBefore(el("span", { class: "badge", text }), node.children[1]);
  }

  function addNotice(text, isError) {
    const node = el("p", {
      class: "msg " + (isError ? "error" : "info"),
      role: isError ? "alert" : null,
      text,
    });
    log.append(node);
    scrollDown();
    return node;
  }

  function renderHistory() {
    log.replaceChildren(el("p", { class: "msg info", text: T.intro }));
    for (const message of history) addMessage(message.role, message.content, message);
  }

  async function showReference(message, ref, section, opener) {
    refOpener = opener;
    const citation = ref != null ? (message.citations || []).find((c) => c.ref === ref) : null;
    const passage =
      ref == null ? (message.passages || []).find((p) => p.section === section) : null;
    refTitle.textContent = ref != null ? fmt(T.cite, { n: ref }) : T.passage;
    refEntry.textContent =
      ref != null ? (citation && citation.reference) || "…" : fmt(T.section, { s: section });
    const entryOriginal = citation && citation.reference_original;
    if (entryOriginal)
      refEntry.append(el("span", { class: "orig", lang: "zh-CN", text: entryOriginal }));
    const quotes = (citation || passage || {}).quotes || [];
    refQuotes.replaceChildren(
      ...quotes.map((q) =>
        el("li", {}, [
          quoteBlock(q),
          el("span", { class: "sec", text: fmt(T.section, { s: q.section }) }),
        ]),
      ),
    );
    refQuotesTitle.hidden = quotes.length === 0;
    log.hidden = true;
    refView.hidden = false;
    refTitle.focus();
    if (ref != null && !(citation && citation.reference)) {
      try {
        const res = await fetch(api + "/v1/references/" + ref, { headers: headers(false) });
        if (!res.ok) throw new Error(String(res.status));
        const entry = await res.json();
        refEntry.textContent = entry.text || entry.reference || T.refFail;
      } catch (_) {
        refEntry.textContent = T.refFail;
      }
    }
  }

  function closeReference() {
    refView.hidden = true;
    log.hidden = false;
    if (refOpener && refOpener.isConnected) refOpener.focus();
    else input.focus();
  }

  function retryAfterSeconds(res, body) {
    const header = res.headers.get("Retry-After");
    if (header && /^\d+$/.test(header.trim())) return Number(header);
    if (header && !Number.isNaN(Date.parse(header)))
      return Math.max(1, Math.ceil((Date.parse(header) - Date.now()) / 1000));
    const fromBody = body && (body.retry_after ?? (body.detail && body.detail.retry_after));
    return Number.isFinite(Number(fromBody)) && fromBody !== null
      ? Math.ceil(Number(fromBody))
      : null;
  }

  async function httpError(res) {
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      /* not JSON: the status alone is reported */
    }
    if (res.status === 401 || res.status === 403) return { kind: "auth", text: T.e401 };
    if (res.status === 429) {
      const seconds = retryAfterSeconds(res, body);
      return {
        kind: "rate",
        retryAfter: seconds,
        text: seconds != null ? fmt(T.e429, { s: seconds }) : T.e429any,
      };
    }
    if (res.status >= 500) {
      const seconds = res.status === 503 ? retryAfterSeconds(res, body) : null;
      return {
        kind: "server",
        text: seconds != null ? fmt(T.e503, { s: seconds }) : fmt(T.e5xx, { status: res.status }),
      };
    }
    let detail = body && ((body.error && body.error.message) || body.detail || body.message);
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    return {
      kind: "request",
      text: fmt(T.e4xx, { status: res.status, detail: detail ? String(detail) : res.statusText }),
    };
  }

  // Reads an SSE body: calls onEvent(data) for each event's data; resolves true after [DONE].
  async function readEvents(res, onEvent) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split("\n")
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data === "[DONE]") {
          reader.cancel().catch(() => {});
          return true;
        }
        if (data) onEvent(JSON.parse(data));
      }
    }
  }

  function setBusy(busy) {
    input.disabled = busy;
    sendButton.hidden = busy;
    cancelButton.hidden = !busy;
    resetButton.disabled = busy;
    log.setAttribute("aria-busy", String(busy));
  }

  async function ask(raw) {
    const question = String(raw || "").trim();
    if (!question || controller) return;
    const hadFocus = root.activeElement != null;
    const context = history.slice(-maxHistory).map(({ role, content }) => ({ role, content }));
    const message = {
      role: "assistant",
      content: "",
      citations: [],
      passages: [],
      abstained: false,
    };
    addMessage("user", question);
    const bubble = addMessage("assistant", "", message);
    bubble.body.textContent = T.pending;
    input.value = "";
    controller = new AbortController();
    setBusy(true);
    if (hadFocus) cancelButton.focus();
    const out = writer(bubble.body, message);
    let started = false;
    let part = null;
    try {
      const res = await fetch(api + "/v1/chat/completions", {
        method: "POST",
        headers: headers(true),
        body: JSON.stringify({
          model: "nenqa",
          stream: true,
          messages: [...context, { role: "user", content: question }],
          ...(answerLang ? { lang: answerLang } : {}),
        }),
        signal: controller.signal,
      });
      if (!res.ok) throw await httpError(res);
      const complete = await readEvents(res, (chunk) => {
        if (chunk.error)
          throw {
            kind: "server",
            text: fmt(T.e4xx, { status: "stream", detail: chunk.error.message || "" }),
          };
        // The last chunk carries nenqa's extra fields next to "choices".
        if (chunk.citations) message.citations = chunk.citations;
        if (chunk.passages) message.passages = chunk.passages;
        if (chunk.abstained != null) message.abstained = Boolean(chunk.abstained);
        const piece = ((chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {}).content;
        if (!piece) return;
        if (!started) bubble.body.textContent = "";
        started = true;
        message.content += piece;
        // llm mode: the quotes arrive first (part "quoted"), the model's summary under a label.
        const summary = chunk.part === "answer" && part === "quoted";
        if (summary) {
          out.end();
          bubble.body.append(el("div", { class: "synth", text: T.synthesized }));
        }
        part = chunk.part || part;
        out.write(summary ? piece.replace(/^\n+/, "") : piece);
        scrollDown();
      });
      if (!complete) throw { kind: "cut", text: T.cut };
      out.end();
      if (!started) bubble.body.textContent = "";
      if (message.abstained) markBadge(bubble.node, T.abstained, "abstained");
      history.push({ role: "user", content: question }, message);
      save();
      emit("answer", {
        question,
        answer: message.content,
        abstained: message.abstained,
        citations: message.citations,
      });
    } catch (err) {
      const aborted = err && err.name === "AbortError";
      if (!aborted) controller.abort();
      // fetch rejects with a TypeError when nothing answers (server down, blocked by CORS).
      const failure = aborted
        ? { kind: "cancelled", text: T.cancelled }
        : err && err.kind
          ? err
          : started
            ? { kind: "cut", text: T.cut }
            : err instanceof TypeError
              ? { kind: "network", text: fmt(T.down, { api }) }
              : { kind: "server", text: fmt(T.e5xx, { status: String(err && err.message) }) };
      if (started) {
        out.end();
        markBadge(bubble.node, T.partial, "partial");
      } else {
        bubble.node.remove();
      }
      addNotice(failure.text, !aborted);
      if (!input.value) input.value = question;
      emit("error", failure);
    } finally {
      controller = null;
      setBusy(false);
      if (hadFocus) input.focus();
    }
  }

  function open() {
    if (pageLayout) return input.focus();
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    input.focus();
    emit("open", {});
  }

  function close() {
    if (pageLayout) return;
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
    emit("close", {});
  }

  function reset() {
    if (controller) controller.abort();
    history = [];
    save();
    closeReference();
    renderHistory();
    input.focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask(input.value);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask(input.value);
    }
  });
  cancelButton.addEventListener("click", () => controller && controller.abort());
  backButton.addEventListener("click", closeReference);
  resetButton.addEventListener("click", reset);
  if (launcher) launcher.addEventListener("click", () => (panel.hidden ? open() : close()));
  if (closeButton) closeButton.addEventListener("click", close);
  wrap.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || (panel.hidden && refView.hidden)) return;
    if (!refView.hidden) closeReference();
    else close();
  });

  history = load().filter(
    (m) => m && (m.role === "user" || m.role === "assistant") && typeof m.content === "string",
  );
  renderHistory();
  const mount = () => {
    const target = pageLayout && attr("target") && document.getElementById(attr("target"));
    (target || document.body).append(host);
  };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
  window.nenqaChat = { open, close, ask, reset };
})();
