/** The home directory in paths: `~` and `~/...`. @module */

/** `path` with a leading `~` or `~/` in `home`; any other path (or no home) as it is. */
export function inHome(path: string, home: string | undefined): string {
  if (!home || (path !== "~" && !path.startsWith("~/"))) return path;
  return home + path.slice(1);
}
