//! `GET /v1/workspaces/{id}/search?query=…`: text search in a workspace, literal by default or a
//! regex, with ripgrep's libraries (`grep-searcher`, `grep-regex`) over an `ignore` walk.
//!
//! Bounded: at most `max_results` matches (capped by the agent), files above a size cap and binary
//! files (a NUL byte) are skipped, and a time budget ends the search early (`timed_out`). Regexes
//! run in linear time (the `regex` crate) with compiled-size limits, so no pattern can stall the
//! agent. Files are opened through [`super::paths`] like a read: a symlink is not followed and a
//! hard-linked file is skipped (its content could come from outside the workspace).

use std::io;
use std::path::Path;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use grep_matcher::Matcher;
use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{BinaryDetection, MmapChoice, Searcher, SearcherBuilder, Sink, SinkMatch};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorCode};
use super::paths::{QueryPath, RelPath, WorkspaceRoot};
use super::{ApiLimits, ApiQuery, ApiState, WorkspaceId};

/// Longest query accepted, in bytes.
const MAX_QUERY_BYTES: usize = 1000;

/// Longest line text returned per match; longer lines are cut (at a character boundary).
const MAX_LINE_BYTES: usize = 1000;

/// Matches per page when `max_results` is not given.
const DEFAULT_MAX_RESULTS: usize = 200;

/// Largest compiled regex (bytes), so a pattern like `\w{1000}{1000}` is refused, not built.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Query parameters of a search (besides `path`, the folder or file to search, default the root).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// What to look for.
    query: String,
    /// Treat `query` as a regex (Rust `regex` syntax) instead of a literal string.
    #[serde(default)]
    regex: bool,
    /// Match case exactly (default: case-insensitive).
    #[serde(default)]
    case_sensitive: bool,
    /// Most matches to return (default 200, capped by the agent).
    max_results: Option<usize>,
}

/// One matching line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchMatch {
    /// Workspace-relative path of the file.
    pub path: String,
    /// 1-based line number.
    pub line_number: u64,
    /// The line (invalid UTF-8 replaced, cut to 1000 bytes, no line terminator).
    pub line: String,
    /// Byte ranges `[start, end)` of the matches within `line`.
    pub submatches: Vec<[usize; 2]>,
}

/// The result of a search.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResults {
    /// Matches in path order.
    pub matches: Vec<SearchMatch>,
    /// Whether more matches exist than were returned (`max_results` reached).
    pub truncated: bool,
    /// Whether the time budget ended the search (some files were not searched).
    pub timed_out: bool,
    /// Files searched.
    pub files_searched: u64,
    /// Files not searched: hard-linked, unreadable, changed during the search or with non-UTF-8
    /// names. (Binary files count as searched; files over the size cap are passed over.)
    pub files_skipped: u64,
}

/// Searches the text of a workspace's files.
#[utoipa::path(
    get,
    path = "/v1/workspaces/{id}/search",
    tag = "search",
    params(
        ("id" = i64, Path, description = "Workspace id"),
        ("path" = Option<String>, Query, description = "Folder or file to search, relative to the workspace root (default: the root)"),
        SearchParams,
    ),
    responses(
        (status = 200, description = "Matches", body = SearchResults),
        (status = 400, description = "`search.invalid_pattern`, `path.*` lexical refusals, `request.invalid`", body = super::ErrorBody),
        (status = 403, description = "`path.outside_workspace`, `path.protected` (the rule in the message)", body = super::ErrorBody),
        (status = 404, description = "`workspace.not_found`, `path.not_found`", body = super::ErrorBody),
    )
)]
pub(crate) async fn search(
    State(state): State<ApiState>,
    WorkspaceId(id): WorkspaceId,
    path: QueryPath,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> ApiResult<Json<SearchResults>> {
    let rel = path.or_root();
    let matcher = build_matcher(&params)?;
    let results = state
        .blocking(move |s| {
            let ws = s.workspace(id)?;
            run_search(&ws, &rel, &matcher, &params, s.limits())
        })
        .await?;
    Ok(Json(results))
}

fn build_matcher(params: &SearchParams) -> ApiResult<RegexMatcher> {
    if params.query.is_empty() || params.query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::new(
            ErrorCode::SearchInvalidPattern,
            format!("the query must be 1 to {MAX_QUERY_BYTES} bytes long"),
        ));
    }
    RegexMatcherBuilder::new()
        .fixed_strings(!params.regex)
        .case_insensitive(!params.case_sensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .line_terminator(Some(b'\n'))
        .build(&params.query)
        .map_err(|e| {
            ApiError::new(
                ErrorCode::SearchInvalidPattern,
                format!("the pattern is not a valid regex: {e}"),
            )
        })
}

fn run_search(
    ws: &WorkspaceRoot,
    rel: &RelPath,
    matcher: &RegexMatcher,
    params: &SearchParams,
    limits: &ApiLimits,
) -> ApiResult<SearchResults> {
    let start = ws.resolve(rel)?;
    let mut searcher = SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(0))
        .line_number(true)
        .memory_map(MmapChoice::never())
        .build();
    let mut run = Run {
        matcher,
        max: params
            .max_results
            .unwrap_or(DEFAULT_MAX_RESULTS)
            .clamp(1, limits.search_max_results),
        deadline: Instant::now() + limits.search_time_budget,
        results: SearchResults {
            matches: Vec::new(),
            truncated: false,
            timed_out: false,
            files_searched: 0,
            files_skipped: 0,
        },
    };
    let walker = ignore::WalkBuilder::new(&start.abs)
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()))
        .max_filesize(Some(limits.search_max_file_bytes))
        .filter_entry({
            // katachi's own folders are invisible: neither entered nor counted
            let protected = ws.protected.clone();
            move |e| e.file_name() != ".git" && !protected.is_invisible(e.path())
        })
        .build();
    for entry in walker {
        if Instant::now() > run.deadline {
            run.results.timed_out = true;
            break;
        }
        if run.results.truncated {
            break;
        }
        let Ok(entry) = entry else {
            run.results.files_skipped += 1;
            continue;
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Some((shown, canonical)) =
            names_of(entry.path(), &start.abs, rel, &start.canonical_rel)
        else {
            run.results.files_skipped += 1;
            continue;
        };
        run.file(ws, &mut searcher, &shown, &canonical);
    }
    Ok(run.results)
}

/// The workspace-relative path of a found file as shown (through the requested folder) and as
/// opened (canonical); `None` for a non-UTF-8 name.
fn names_of(
    found: &Path,
    start_abs: &Path,
    shown_start: &RelPath,
    canonical_start: &str,
) -> Option<(String, RelPath)> {
    let sub = found.strip_prefix(start_abs).ok()?.to_str()?;
    let sub = sub.replace(std::path::MAIN_SEPARATOR, "/");
    let join = |base: &str| match (base.is_empty(), sub.is_empty()) {
        (_, true) => base.to_owned(),
        (true, false) => sub.clone(),
        (false, false) => format!("{base}/{sub}"),
    };
    let canonical = RelPath::parse(join(canonical_start).as_bytes()).ok()?;
    Some((join(shown_start.as_str()), canonical))
}

/// One search's state.
struct Run<'m> {
    /// The compiled pattern.
    matcher: &'m RegexMatcher,
    /// Most matches to return.
    max: usize,
    /// When to stop.
    deadline: Instant,
    /// What was found so far.
    results: SearchResults,
}

impl Run<'_> {
    /// Searches one file, opened with the same checks as a read.
    fn file(
        &mut self,
        ws: &WorkspaceRoot,
        searcher: &mut Searcher,
        shown: &str,
        canonical: &RelPath,
    ) {
        let opened = ws.resolve(canonical).and_then(|r| ws.open_file(&r));
        let Ok(file) = opened else {
            // hard-linked, swapped, vanished or unreadable: not searched
            self.results.files_skipped += 1;
            return;
        };
        let matcher = self.matcher;
        let mut sink = Collect {
            run: self,
            path: shown,
        };
        if searcher.search_file(matcher, &file, &mut sink).is_err() {
            self.results.files_skipped += 1;
            return;
        }
        self.results.files_searched += 1;
    }
}

/// The sink collecting matching lines of one file.
struct Collect<'r, 'm> {
    /// The search it belongs to.
    run: &'r mut Run<'m>,
    /// The file's path as shown.
    path: &'r str,
}

impl Sink for Collect<'_, '_> {
    type Error = io::Error;

    fn matched(&mut self, _searcher: &Searcher, m: &SinkMatch<'_>) -> Result<bool, io::Error> {
        if self.run.results.matches.len() >= self.run.max {
            self.run.results.truncated = true;
            return Ok(false);
        }
        if Instant::now() > self.run.deadline {
            self.run.results.timed_out = true;
            return Ok(false);
        }
        let raw = m.bytes();
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if line.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let mut submatches = Vec::new();
        // offsets within the text as sent (after replacement and cutting)
        let _ = self.run.matcher.find_iter(line.as_bytes(), |found| {
            submatches.push([found.start(), found.end()]);
            submatches.len() < 100
        });
        self.run.results.matches.push(SearchMatch {
            path: self.path.to_owned(),
            line_number: m.line_number().unwrap_or(0),
            line,
            submatches,
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str, regex: bool) -> SearchParams {
        SearchParams {
            query: query.to_owned(),
            regex,
            case_sensitive: false,
            max_results: None,
        }
    }

    fn search_in(dir: &Path, p: &SearchParams) -> SearchResults {
        let ws = WorkspaceRoot {
            id: 1,
            root: std::fs::canonicalize(dir).unwrap(),
            protected: Default::default(),
        };
        let m = build_matcher(p).unwrap();
        run_search(&ws, &RelPath::default(), &m, p, &ApiLimits::default()).unwrap()
    }

    #[test]
    fn literal_queries_do_not_interpret_regex_syntax() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.rs"), b"let x = a.b();\nlet y = axb();\n").unwrap();
        let r = search_in(tmp.path(), &params("a.b(", false));
        assert_eq!(r.matches.len(), 1);
        assert_eq!(r.matches[0].line_number, 1);
        assert_eq!(r.matches[0].submatches, vec![[8, 12]]);
        let r = search_in(tmp.path(), &params(r"a.b\(", true));
        assert_eq!(r.matches.len(), 2);
    }

    #[test]
    fn invalid_and_empty_patterns_are_refused() {
        for p in [params("(", true), params("", false)] {
            assert_eq!(
                build_matcher(&p).unwrap_err().code(),
                ErrorCode::SearchInvalidPattern
            );
        }
        let huge = params(r"\w{1000}{1000}", true);
        assert!(build_matcher(&huge).is_err());
    }

    #[test]
    fn results_are_bounded_and_binary_and_ignored_files_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("many.txt"), "needle\n".repeat(50)).unwrap();
        std::fs::write(tmp.path().join("bin.dat"), b"needle\0\x01\x02").unwrap();
        std::fs::write(tmp.path().join(".gitignore"), b"ignored.txt\n").unwrap();
        std::fs::write(tmp.path().join("ignored.txt"), b"needle\n").unwrap();
        let mut p = params("NEEDLE", false);
        p.max_results = Some(10);
        let r = search_in(tmp.path(), &p);
        assert_eq!(r.matches.len(), 10);
        assert!(r.truncated);
        assert!(r.matches.iter().all(|m| m.path == "many.txt"));
        p.case_sensitive = true;
        assert!(search_in(tmp.path(), &p).matches.is_empty());
    }
}
