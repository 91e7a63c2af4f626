// Which CodeMirror language a file gets, from its name. Unknown kinds are shown as plain text.

import { StreamLanguage } from "@codemirror/language";
import { css } from "@codemirror/lang-css";
import { html } from "@codemirror/lang-html";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";
import { markdown } from "@codemirror/lang-markdown";
import { python } from "@codemirror/lang-python";
import { rust } from "@codemirror/lang-rust";
import { c, cpp, java } from "@codemirror/legacy-modes/mode/clike";
import { dockerFile } from "@codemirror/legacy-modes/mode/dockerfile";
import { go } from "@codemirror/legacy-modes/mode/go";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { toml } from "@codemirror/legacy-modes/mode/toml";
import { yaml } from "@codemirror/legacy-modes/mode/yaml";

const legacy = (mode) => () => StreamLanguage.define(mode);

/** Extension (lowercase, no dot) → [display name, language factory]. */
const BY_EXTENSION = {
  rs: ["Rust", rust],
  js: ["JavaScript", () => javascript()],
  mjs: ["JavaScript", () => javascript()],
  cjs: ["JavaScript", () => javascript()],
  jsx: ["JavaScript (JSX)", () => javascript({ jsx: true })],
  ts: ["TypeScript", () => javascript({ typescript: true })],
  mts: ["TypeScript", () => javascript({ typescript: true })],
  cts: ["TypeScript", () => javascript({ typescript: true })],
  tsx: ["TypeScript (JSX)", () => javascript({ typescript: true, jsx: true })],
  py: ["Python", python],
  pyi: ["Python", python],
  json: ["JSON", json],
  md: ["Markdown", markdown],
  markdown: ["Markdown", markdown],
  html: ["HTML", html],
  htm: ["HTML", html],
  css: ["CSS", css],
  toml: ["TOML", legacy(toml)],
  lock: ["TOML", legacy(toml)],
  yaml: ["YAML", legacy(yaml)],
  yml: ["YAML", legacy(yaml)],
  sh: ["Shell", legacy(shell)],
  bash: ["Shell", legacy(shell)],
  go: ["Go", legacy(go)],
  c: ["C", legacy(c)],
  h: ["C", legacy(c)],
  cc: ["C++", legacy(cpp)],
  cpp: ["C++", legacy(cpp)],
  hpp: ["C++", legacy(cpp)],
  java: ["Java", legacy(java)],
};

/** Whole file names that say what they are. */
const BY_NAME = {
  dockerfile: ["Dockerfile", legacy(dockerFile)],
  makefile: ["Makefile", legacy(shell)],
};

/** `{ name, extension }` for `path`: the language's name and its CodeMirror extension (`[]` for plain text). */
export function languageFor(path) {
  const file = path.split("/").pop().toLowerCase();
  const dot = file.lastIndexOf(".");
  const entry = BY_NAME[file] || (dot > 0 ? BY_EXTENSION[file.slice(dot + 1)] : undefined);
  if (!entry) { return { name: "Plain text", extension: [] }; }
  return { name: entry[0], extension: entry[1]() };
}
