//! A minimal Tauri v2 app that runs GeoLibre's ML sidecar the way the packaging
//! recipe (tauri-bridge/tauri/) says: the page spawns it through the shell plugin,
//! allowed by the recipe's capability. Rust adds only what the page cannot do
//! itself: the app's pid (for the sidecar's --parent-pid watchdog) and a log file
//! for the sidecar's output, since a GUI build has no terminal to show it.

// No console window on Windows release builds (GeoLibre's setting).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use tauri::Manager;

/// Where a test asks the page to run its flow and report (read once at start).
const E2E_REPORT_VAR: &str = "GEOLIBRE_APP_E2E_REPORT";
/// Which flow the page runs then (see e2e.ts): "full" unless set.
const E2E_FLOW_VAR: &str = "GEOLIBRE_APP_E2E_FLOW";
const SIDECAR_LOG: &str = "ml-sidecar.log";

struct AppState {
    sidecar_log: Mutex<Option<fs::File>>,
    sidecar_log_path: PathBuf,
    e2e_report: Option<PathBuf>,
    e2e_flow: String,
}

/// The app's pid: the sidecar exits when this process does, even after SIGKILL.
#[tauri::command]
fn app_pid() -> u32 {
    std::process::id()
}

/// Append the sidecar's output to <app log dir>/ml-sidecar.log.
#[tauri::command]
fn sidecar_log(state: tauri::State<'_, AppState>, lines: Vec<String>) -> Result<(), String> {
    let mut guard = state.sidecar_log.lock().map_err(|e| e.to_string())?;
    if guard.is_none() {
        if let Some(dir) = state.sidecar_log_path.parent() {
            fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&state.sidecar_log_path)
            .map_err(|e| e.to_string())?;
        *guard = Some(file);
    }
    let file = guard.as_mut().expect("opened above");
    for line in lines {
        writeln!(file, "{line}").map_err(|e| e.to_string())?;
    }
    file.flush().map_err(|e| e.to_string())
}

/// The log file's path, shown on the page.
#[tauri::command]
fn sidecar_log_path(state: tauri::State<'_, AppState>) -> String {
    state.sidecar_log_path.display().to_string()
}

/// The flow a test asks the page to run and report, if a test drives it.
#[tauri::command]
fn e2e_flow(state: tauri::State<'_, AppState>) -> Option<String> {
    state.e2e_report.as_ref().map(|_| state.e2e_flow.clone())
}

/// One JSON line of what the page shows, for the test that drives it.
#[tauri::command]
fn e2e_report(state: tauri::State<'_, AppState>, line: String) -> Result<(), String> {
    let Some(path) = &state.e2e_report else {
        return Err("no report file".into());
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    writeln!(file, "{}", line.replace('\n', " ")).map_err(|e| e.to_string())
}

fn main() {
    let report_file = std::env::var_os(E2E_REPORT_VAR).map(PathBuf::from);
    let flow = std::env::var(E2E_FLOW_VAR).unwrap_or_else(|_| "full".into());
    tauri::Builder::default()
        .plugin(tauri_plugin_shell::init())
        .setup(move |app| {
            let log_dir = app.path().app_log_dir()?;
            app.manage(AppState {
                sidecar_log: Mutex::new(None),
                sidecar_log_path: log_dir.join(SIDECAR_LOG),
                e2e_report: report_file,
                e2e_flow: flow,
            });
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            app_pid,
            sidecar_log,
            sidecar_log_path,
            e2e_flow,
            e2e_report
        ])
        .run(tauri::generate_context!())
        .expect("the app could not start");
}
