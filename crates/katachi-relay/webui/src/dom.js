// Small DOM helpers. Every piece of text from the agent goes through textContent, never innerHTML.

/** Creates `<tag>` with attributes (`class`, `data-*`, `title`, …) and children (nodes or strings). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) { continue; }
    if (name === "class") { node.className = value; }
    else if (name.startsWith("on") && typeof value === "function") { node.addEventListener(name.slice(2), value); }
    else { node.setAttribute(name, value === true ? "" : String(value)); }
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) { continue; }
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Replaces all children of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  for (const child of children) {
    if (child !== undefined && child !== null && child !== false) { node.append(child); }
  }
}

/** A message line: `kind` is `error`, `info` or `muted`. */
export function message(kind, text, ...extra) {
  return el("p", { class: `wb-message ${kind}`, role: kind === "error" ? "alert" : null }, text, ...extra);
}

/** `1234` → `1,234 bytes`, `3 456 789` → `3.3 MiB (3,456,789 bytes)`. */
export function formatSize(bytes) {
  const exact = `${Number(bytes).toLocaleString("en-US")} ${bytes === 1 ? "byte" : "bytes"}`;
  if (bytes < 1024) { return exact; }
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(1)} ${units[unit]} (${exact})`;
}
