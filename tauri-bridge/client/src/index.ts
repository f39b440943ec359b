/**
 * @geolibre/ml-client: the desktop app's client for GeoLibre's ML sidecar.
 * This entry runs anywhere (webview, browser, Node); process adapters live in
 * `@geolibre/ml-client/node` and `@geolibre/ml-client/tauri`.
 */

export { MlClient } from "./client.js";
export { START_POLL_MS } from "./client.js";
export type { MlClientOptions, StartBackendOptions } from "./client.js";
export { geolibreEnvironment, launcherCommand, uvSidecarCommand } from "./commands.js";
export type { LauncherCommandOptions, UvSidecarCommandOptions } from "./commands.js";
export { isAbortError, kindForStatus, SidecarError, SidecarStartError } from "./errors.js";
export type { ProcessExit, SidecarErrorKind, StartFailure } from "./errors.js";
export { parseReadyLine } from "./handshake.js";
export { TOKEN_HEADER, Transport } from "./http.js";
export type { CallOptions, ConnectionSource, FetchLike, SidecarConnection, SidecarEndpoint } from "./http.js";
export { followInstallEvents, INSTALL_PHASES, overallFraction } from "./install.js";
export type {
  FollowOptions,
  InstallEndEvent,
  InstallErrorEvent,
  InstallEvent,
  InstallProgressEvent,
  InstallResultEvent,
} from "./install.js";
export { followEvents } from "./follow.js";
export { followJobEvents, jobForm } from "./jobs.js";
export type {
  JobEndEvent,
  JobEvent,
  JobList,
  JobParams,
  JobSnapshot,
  JobState,
  JobTileEvent,
} from "./jobs.js";
export { describeCommand, LineSplitter, LineTail } from "./process.js";
export type { ProcessHandlers, ProcessLauncher, SidecarCommand, SidecarProcess } from "./process.js";
export { RestartPolicy } from "./restart.js";
export type { RestartDecision, RestartPolicyOptions } from "./restart.js";
export { isBinaryFormat, segmentForm } from "./segment.js";
export type * from "./segment.js";
export { Sidecar } from "./sidecar.js";
export { stopProcess } from "./stop.js";
export type { StopOptions, StopTarget } from "./stop.js";
export type { SidecarEvents, SidecarOptions, SidecarState, StopMethod, StopResult } from "./sidecar.js";
export { readEventStream, SseParser } from "./sse.js";
export type { ServerSentEvent } from "./sse.js";
export type * from "./types.js";
