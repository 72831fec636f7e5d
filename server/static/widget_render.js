/*! nenqa chat widget, part 1 of 2: drawing an answer (citation buttons, evidence tables).
 * GET /widget.js serves it ahead of widget.js, both inside one function (docs/widget.md).
 * Every text goes through textContent or text nodes; no markup is ever parsed. */
const widgetRender = (() => {
  "use strict";
  const marker = /\[(\d{1,3})\]|\[§([^\[\]\n]{1,160})\]/g;
  // The line under a Markdown table's header, "| --- | --- |" (answer/tables.py writes it).
  const tableRule = /^\s*\|(?:\s*:?-{3,}:?\s*\|)+\s*$/;
  const tableLine = /^\s*\|/;
  // A "[" this close to the end may still become a marker: held until its "]" arrives.
  const markerHold = 170;

  const css = `
.tbl{overflow-x:auto;margin:4px 0;white-space:normal}
table{border-collapse:collapse;font-size:13px;line-height:1.4}
th,td{border:1px solid #b7c2ce;padding:3px 6px;text-align:left;vertical-align:top;min-width:4em}
thead th{background:#dde3ea}tbody th{font-weight:600;background:#f5f7fa}td{background:#fff}`;

  // Builds an element; "text" sets textContent, "on*" adds listeners, the rest are attributes.
  const el = (tag, props = {}, kids = []) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== false && value != null)
        node.setAttribute(key, value === true ? "" : value);
    }
    for (const kid of kids) if (kid) node.append(kid);
    return node;
  };

  // The cells of a Markdown table line; "\|" inside a cell is a literal bar.
  const cellsOf = (line) =>
    line
      .trim()
      .replace(/^\|/, "")
      .replace(/(?<!\\)\|$/, "")
      .split(/(?<!\\)\|/)
      .map((cell) => cell.trim().replace(/\\\|/g, "|"));

  // T: the UI strings; onCite(message, ref, section, button) opens a citation's passage.
  function renderer(T, fmt, onCite) {
    function citeButton(ref, section, message) {
      const label = ref != null ? fmt(T.cite, { n: ref }) : fmt(T.citePassage, { s: section });
      return el("button", {
        class: "cite",
        type: "button",
        "aria-label": label,
        title: label,
        text: ref != null ? "[" + ref + "]" : "§" + section,
        onclick: (event) => onCite(message, ref, section, event.currentTarget),
      });
    }

    // Appends text, turning complete [n] and [§section] markers into citation buttons.
    function appendRich(body, text, message) {
      let last = 0;
      for (const m of text.matchAll(marker)) {
        body.append(
          text.slice(last, m.index),
          citeButton(m[1] ? Number(m[1]) : null, m[2] || null, message),
        );
        last = m.index + m[0].length;
      }
      body.append(text.slice(last));
    }

    // A translated quote is a button: a click, Enter or Space shows (or hides) its original.
    function quoteBlock(q) {
      if (!q.original) return el("blockquote", { text: q.text });
      const original = el("span", { class: "orig", lang: "zh-CN", hidden: true }, [
        el("b", { text: T.original }),
        q.original,
      ]);
      const button = el("button", { class: "quote", type: "button", title: T.reveal, text: q.text });
      button.setAttribute("aria-expanded", "false");
      button.addEventListener("click", () => {
        original.hidden = !original.hidden;
        button.setAttribute("aria-expanded", String(!original.hidden));
      });
      return el("blockquote", {}, [button, original]);
    }

    // Draws an answer into body as its text arrives (write), then the rest (end): text with
    // citation buttons, and lines starting with "|" under a "| --- |" rule as a <table> (its
    // first cell a row header). A line is held until it is known not to be a table line, and
    // an unterminated "[..." until its marker closes, so neither is ever drawn half.
    function writer(body, message) {
      let pending = "";
      let lineStart = true;
      let blank = ""; // blank lines at a line start: dropped before and after a table
      let held = null; // a "|" line not yet known to head a table (no rule under it yet)
      let rows = null; // the <tbody> of the table being drawn

      function drawText(text) {
        if (held != null) appendRich(body, held + "\n", message);
        appendRich(body, blank + text, message);
        held = rows = null;
        blank = "";
        if (text) lineStart = text.endsWith("\n");
      }

      function drawRow(line) {
        const row = el("tr");
        cellsOf(line).forEach((cell, i) => {
          const node = el(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {});
          appendRich(node, cell, message);
          row.append(node);
        });
        rows.append(row);
      }

      function drawTableLine(line) {
        if (held != null && tableRule.test(line)) {
          const head = cellsOf(held).map((c) => el("th", { scope: "col", text: c }));
          rows = el("tbody");
          const table = el("table", {}, [el("thead", {}, [el("tr", {}, head)]), rows]);
          const region = { class: "tbl", tabindex: "0", role: "region", "aria-label": T.table };
          body.append(el("div", region, [table]));
          held = null;
        } else if (rows) drawRow(line);
        else {
          if (held != null) drawText("");
          held = line;
        }
        blank = "";
      }

      function write(piece, final) {
        pending += piece;
        while (pending) {
          const newline = pending.indexOf("\n");
          if (lineStart) {
            const line = newline < 0 ? pending : pending.slice(0, newline);
            if (!final && newline < 0 && (tableLine.test(line) || !line.trim())) return;
            if (tableLine.test(line)) {
              drawTableLine(line);
              pending = newline < 0 ? "" : pending.slice(newline + 1);
              continue;
            }
            if (!line.trim() && newline >= 0) {
              if (rows) rows = null;
              else blank += line + "\n";
              pending = pending.slice(newline + 1);
              continue;
            }
          }
          let text = newline < 0 ? pending : pending.slice(0, newline + 1);
          const open = text.lastIndexOf("[");
          if (!final && newline < 0 && open >= 0 && text.indexOf("]", open) < 0)
            if (text.length - open < markerHold) text = text.slice(0, open);
          if (!text) return;
          drawText(text);
          pending = pending.slice(text.length);
        }
      }

      return {
        write: (piece) => write(piece, false),
        // Draws whatever is held; what follows starts a new line.
        end: () => {
          write("", true);
          if (held != null) appendRich(body, held, message);
          held = rows = null;
          blank = "";
          lineStart = true;
        },
      };
    }

    return { appendRich, quoteBlock, writer };
  }

  return { css, el, renderer };
})();
