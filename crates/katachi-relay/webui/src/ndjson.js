// Reads an NDJSON answer (one JSON object per line) from a fetch body as it streams, so each event
// is shown when it arrives rather than when the answer ends.

/**
 * Calls `onEvent(object)` for each line of `response`'s body until it ends; true when `onEvent`
 * returned true for one of them (the stream's own last event). A line that is not JSON throws.
 */
export async function readNdjson(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  let pending = "";
  let finished = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) { break; }
    pending += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line.trim() === "") { continue; }
      let event;
      try {
        event = JSON.parse(line);
      } catch (e) {
        throw new Error("the agent sent a line that is not JSON; the turn's view stops here");
      }
      finished = onEvent(event) || finished;
    }
  }
  return finished;
}
