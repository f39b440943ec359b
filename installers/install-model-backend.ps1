# One-click installer for GeoLibre's SAM 3 model backend (Windows; PowerShell 5.1 or newer).
#
#   powershell -ExecutionPolicy Bypass -File installers\install-model-backend.ps1 [options]
#
# 1. finds uv (GEOLIBRE_ML_UV, uv on PATH, an earlier bootstrap) or bootstraps
#    it with this machine's Python and pip: no administrator rights, nothing
#    downloaded from anywhere but the package index;
# 2. installs the geolibre-ml command from the project folder this script
#    lives in, into a folder of its own under the user's data folder;
# 3. shows the plan (what this computer can run), then runs
#    `geolibre-ml install` with its progress bar;
# 4. runs `geolibre-ml doctor` and ends with one line: the verdict.
#
# install-model-backend.sh beside this file is the same installer for Linux and
# macOS, step for step: keep the two in step (tests/installers checks flags and
# messages). Keep this file ASCII: PowerShell 5.1 reads a file without a byte
# order mark in the ANSI code page.

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 2.0

$UvRequirement = 'uv>=0.9,<0.14'
$UvMinMinor = 9                 # uv 0.9 or newer (0.x releases)
$UvVersionTimeoutS = 20         # a uv that hangs on --version is not usable
$CliVersionTimeoutS = 60        # the first start of a fresh environment compiles bytecode
$CliMarker = '.geolibre-ml-complete'
$TotalSteps = 4

$onWindows = [System.Environment]::OSVersion.Platform -eq 'Win32NT'
$venvBin = if ($onWindows) { 'Scripts' } else { 'bin' }
$exeSuffix = if ($onWindows) { '.exe' } else { '' }
$script:Done = $false
$script:tmpDir = ''
$script:savedEncoding = $null

# ---------------------------------------------------------------- messages
function say([string]$Message) { [Console]::Out.WriteLine($Message) }
function info([string]$Message) { [Console]::Out.WriteLine('      ' + $Message) }
function warn([string]$Message) { [Console]::Error.WriteLine('install-model-backend: warning: ' + $Message) }
function step([int]$Number, [string]$Title) {
    [Console]::Out.WriteLine('')
    [Console]::Out.WriteLine("[$Number/$TotalSteps] $Title")
}
function finish([int]$Code) {
    $script:Done = $true
    exit $Code
}
function fail([string]$Message, [string]$Fix = '', [int]$Code = 1) {
    # One sentence saying what broke, one saying what to do.
    [Console]::Error.WriteLine('install-model-backend: error: ' + $Message)
    if ($Fix) {
        [Console]::Error.WriteLine('  Fix: ' + $Fix)
    }
    finish $Code
}

function usage {
    $text = @'
Usage: install-model-backend.ps1 [options]

Installs GeoLibre's SAM 3 model backend for this user (no administrator rights):
uv, the geolibre-ml command, the model environment and, with a Hugging Face
token, the SAM 3 weights. Run it again at any time: what is in place is kept.

Options:
  --backend NAME      SAM 3 backend: meta (NVIDIA GPU) or transformers (any computer)
  --build NAME        force a torch build (cpu, cu126, cu128, cu130)
  --token-file PATH   read the Hugging Face token from this file
  --token-stdin       read the Hugging Face token from standard input
  --ask-token         ask for the Hugging Face token (hidden input)
  --checkpoint PATH   use this local sam3.pt instead of downloading the weights
  --no-weights        install the environment only, not the weights
  --force             rebuild the model environment even if it is up to date
  --dry-run           show the plan and stop (installs only the geolibre-ml command)
  -y, --yes           never ask a question (for scripts)
  -v, --verbose       show the output of every tool
  -h, --help          show this help

The token is never shown or logged; HF_TOKEN from the environment is used too.

Environment:
  GEOLIBRE_ML_HOME     put everything under this folder instead of the user's data folder
  GEOLIBRE_ML_UV       the uv binary to use
  GEOLIBRE_ML_PROJECT  the geolibre-ml project folder (default: the one holding this script)
  UV_*                 uv's own settings (UV_INDEX_URL, UV_FIND_LINKS, UV_OFFLINE,
                       UV_CACHE_DIR, ...) are honoured; UV_PYTHON_DOWNLOADS defaults
                       to never (this computer's Python is used)

Exit codes: 0 done, 1 failed (the message says how to fix it), 2 bad option,
3 environment installed but the weights are not, 130 interrupted.
'@
    [Console]::Out.WriteLine($text)
}

function usage_error([string]$Message) {
    [Console]::Error.WriteLine('install-model-backend: ' + $Message)
    [Console]::Error.WriteLine('Run it with --help to see the options.')
    finish 2
}

function need_value([object[]]$Argv, [int]$Index) {
    # The value that follows an option, or a usage error if none does.
    if ($Index + 1 -ge $Argv.Count) {
        usage_error "$($Argv[$Index]) needs a value."
    }
    return [string]$Argv[$Index + 1]
}

# ---------------------------------------------------------------- running tools
function Invoke-Captured([string]$Exe, [string[]]$Arguments) {
    # Output (stdout and stderr) and exit code of a tool; never throws for what
    # the tool wrote to stderr (Windows PowerShell turns that into errors).
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    $global:LASTEXITCODE = 127
    $lines = @()
    try {
        $lines = @(& $Exe @Arguments 2>&1 | ForEach-Object { "$_" })
        $code = $LASTEXITCODE
    } catch {
        $lines = @("$_")
        $code = 127
    } finally {
        $ErrorActionPreference = $saved
    }
    return New-Object PSObject -Property @{ Code = $code; Text = ($lines -join "`n") }
}

function run_logged([string]$Exe, [string[]]$Arguments) {
    # Tool output goes to the log (shown on failure); --verbose shows it live.
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    $global:LASTEXITCODE = 127
    try {
        if ($script:verbose) {
            & $Exe @Arguments 2>&1 | ForEach-Object { "$_" } | Out-Host
        } else {
            & $Exe @Arguments 2>&1 | ForEach-Object { "$_" } |
                Out-File -LiteralPath $script:log -Append -Encoding utf8
        }
        return $LASTEXITCODE
    } catch {
        "$_" | Out-File -LiteralPath $script:log -Append -Encoding utf8
        return 127
    } finally {
        $ErrorActionPreference = $saved
    }
}

function Invoke-WithTimeout([string]$Exe, [string]$Arguments, [int]$Seconds) {
    # stdout of a short command, or $null if it failed, did not start or timed out.
    $psi = New-Object System.Diagnostics.ProcessStartInfo
    $psi.FileName = $Exe
    $psi.Arguments = $Arguments
    $psi.UseShellExecute = $false
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $psi.CreateNoWindow = $true
    try {
        $proc = [System.Diagnostics.Process]::Start($psi)
    } catch {
        return $null
    }
    $out = $proc.StandardOutput.ReadToEndAsync()
    $null = $proc.StandardError.ReadToEndAsync()
    if (-not $proc.WaitForExit($Seconds * 1000)) {
        try { $proc.Kill() } catch { }
        return $null
    }
    if ($proc.ExitCode -ne 0) {
        return $null
    }
    return $out.Result.Trim()
}

function check_interrupt([int]$Code = 0) {
    # A child that got Ctrl-C exits 130: stop, saying nothing broke.
    if ($Code -eq 130) {
        [Console]::Error.WriteLine('')
        fail "Interrupted. Nothing half-installed was marked ready." `
            "Run this script again: it resumes where it stopped." 130
    }
}

function is_true([string]$Value) {
    return @('1', 'true', 'yes', 'on') -contains ("$Value".ToLowerInvariant())
}

function absolute([string]$Path) {
    # A literal ~ from a configuration file or a quoted value, as Path.expanduser would.
    if ($Path -eq '~') {
        return $HOME
    }
    if ($Path.StartsWith('~/') -or $Path.StartsWith('~\')) {
        $Path = Join-Path $HOME $Path.Substring(2)
    }
    if (-not [System.IO.Path]::IsPathRooted($Path)) {
        $Path = [System.IO.Path]::Combine($PWD.ProviderPath, $Path)
    }
    return [System.IO.Path]::GetFullPath($Path)
}

function log_tail {
    if ((Test-Path -LiteralPath $script:log) -and (Get-Item -LiteralPath $script:log).Length -gt 0) {
        [Console]::Error.WriteLine("  Last lines of $($script:log):")
        Get-Content -LiteralPath $script:log -Tail 15 -Encoding UTF8 |
            ForEach-Object { [Console]::Error.WriteLine('    ' + $_) }
    }
}

# ---------------------------------------------------------------- step 1: uv
function uv_version_of([string]$Uv) {
    # @{ Version; Status }: Status 0 a working uv 0.9 or newer, 1 not a uv, 2 too old.
    $out = Invoke-WithTimeout $Uv '--version' $UvVersionTimeoutS
    if ($null -eq $out -or -not ($out -match '^uv (\d+)\.(\d+)\.(\d+)')) {
        return @{ Version = ''; Status = 1 }
    }
    $version = "$($Matches[1]).$($Matches[2]).$($Matches[3])"
    if ([int]$Matches[1] -gt 0 -or [int]$Matches[2] -ge $UvMinMinor) {
        return @{ Version = $version; Status = 0 }
    }
    return @{ Version = $version; Status = 2 }
}

function find_python {
    foreach ($candidate in @('py -3', 'python3', 'python')) {
        $parts = @($candidate -split ' ')
        if (-not (Get-Command $parts[0] -CommandType Application -ErrorAction SilentlyContinue)) {
            continue
        }
        $probe = 'import sys; print(sys.executable); sys.exit(sys.version_info < (3, 8))'
        $result = Invoke-Captured $parts[0] (@($parts | Select-Object -Skip 1) + @('-c', $probe))
        if ($result.Code -eq 0 -and $result.Text.Trim()) {
            return @($result.Text.Trim() -split "`n")[-1].Trim()
        }
    }
    return $null
}

function bootstrap_uv {
    # uv from the package index with pip, in a scratch venv; only the finished
    # binary is moved into place, so an interrupted bootstrap leaves nothing.
    $python = find_python
    if (-not $python) {
        fail "uv was not found, and there is no Python 3.8 or newer to install it with." `
            "Install uv or Python 3 with your package manager, or set GEOLIBRE_ML_UV to a uv binary."
    }
    info "uv was not found: installing it with $python and pip (once, into $(Join-Path $cliDir 'uv'))."
    $venv = Join-Path $script:tmpDir 'bootstrap'
    Set-Content -LiteralPath $script:log -Value '' -Encoding UTF8
    $rc = run_logged $python @('-m', 'venv', $venv)
    check_interrupt $rc
    if ($rc -ne 0) {
        log_tail
        fail "$python could not create a virtual environment to install uv in." `
            "Install your Python's venv module (on Debian or Ubuntu: the python3-venv package), or install uv and set GEOLIBRE_ML_UV."
    }
    # pip gets uv's index settings, so a mirror or a wheelhouse works for both.
    $pipArgs = @('-m', 'pip', 'install', '--disable-pip-version-check', '--quiet')
    $index = if ($env:UV_DEFAULT_INDEX) { $env:UV_DEFAULT_INDEX } else { $env:UV_INDEX_URL }
    if ((is_true $env:UV_OFFLINE) -or (is_true $env:UV_NO_INDEX)) {
        $pipArgs += '--no-index'
    } elseif (-not $env:PIP_INDEX_URL -and $index) {
        $pipArgs += @('--index-url', $index)
    }
    if ($env:UV_FIND_LINKS) {
        foreach ($link in ($env:UV_FIND_LINKS -split ',')) {
            if ($link) {
                $pipArgs += @('--find-links', $link)
            }
        }
    }
    $pipArgs += $UvRequirement
    $venvUv = Join-Path (Join-Path $venv $venvBin) "uv$exeSuffix"
    $rc = run_logged (Join-Path (Join-Path $venv $venvBin) "python$exeSuffix") $pipArgs
    check_interrupt $rc
    if ($rc -ne 0 -or -not (Test-Path -LiteralPath $venvUv)) {
        log_tail
        fail "pip could not install uv from the package index." `
            "Check the network or proxy (HTTPS_PROXY), point UV_INDEX_URL or PIP_INDEX_URL at a mirror, or install uv and set GEOLIBRE_ML_UV."
    }
    $uvDir = Join-Path $cliDir 'uv'
    New-Item -ItemType Directory -Force -Path $uvDir | Out-Null
    $staged = Join-Path $uvDir "uv.tmp-$PID$exeSuffix"
    Copy-Item -LiteralPath $venvUv -Destination $staged -Force
    $final = Join-Path $uvDir "uv$exeSuffix"
    if (Test-Path -LiteralPath $final) {
        [System.IO.File]::Replace($staged, $final, [NullString]::Value)
    } else {
        [System.IO.File]::Move($staged, $final)
    }
    Remove-Item -LiteralPath $venv -Recurse -Force -ErrorAction SilentlyContinue
}

function find_uv {
    if ($env:GEOLIBRE_ML_UV) {
        $found = uv_version_of $env:GEOLIBRE_ML_UV
        if ($found.Status -ne 0) {
            fail "GEOLIBRE_ML_UV=$env:GEOLIBRE_ML_UV is not a working uv 0.9 or newer." `
                "Point GEOLIBRE_ML_UV at a uv 0.9 or newer, or unset it to let this script find or install one."
        }
        $script:uv = $env:GEOLIBRE_ML_UV
        info "uv $($found.Version) at $($script:uv) (GEOLIBRE_ML_UV)"
        return
    }
    $onPath = Get-Command uv -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($onPath) {
        $script:uv = $onPath.Path
        $found = uv_version_of $script:uv
        if ($found.Status -eq 0) {
            info "uv $($found.Version) at $($script:uv) (PATH)"
            return
        }
        info "ignoring the uv on PATH ($($script:uv)): it is not a working uv 0.9 or newer."
    }
    $script:uv = Join-Path (Join-Path $cliDir 'uv') "uv$exeSuffix"
    if (Test-Path -LiteralPath $script:uv) {
        $found = uv_version_of $script:uv
        if ($found.Status -eq 0) {
            info "uv $($found.Version) at $($script:uv) (installed by an earlier run)"
            return
        }
    }
    bootstrap_uv
    $found = uv_version_of $script:uv
    if ($found.Status -ne 0) {
        fail "The uv just installed at $($script:uv) does not run." `
            "Security software may block new programs in $($cliDir): allow them, or set GEOLIBRE_ML_UV."
    }
    info "uv $($found.Version) at $($script:uv) (installed now)"
}

# ---------------------------------------------------------------- step 2: the geolibre-ml command
function source_fingerprint {
    # What the command is built from; a change gives a new folder and a rebuild.
    $root = (Get-Item -LiteralPath $project).FullName.TrimEnd('\', '/')
    $entries = New-Object System.Collections.Generic.List[string]
    foreach ($name in @('env-manager', 'installers', 'pyproject.toml', 'uv.lock')) {
        $path = Join-Path $root $name
        if (-not (Test-Path -LiteralPath $path)) {
            continue
        }
        foreach ($file in @(Get-ChildItem -LiteralPath $path -Recurse -File)) {
            if (@('.py', '.toml', '.txt', '.lock') -notcontains $file.Extension) {
                continue
            }
            $relative = $file.FullName.Substring($root.Length + 1).Replace('\', '/')
            if ($relative -match '(^|/)(__pycache__|\.[^/]*)(/|$)') {
                continue
            }
            $hash = (Get-FileHash -LiteralPath $file.FullName -Algorithm SHA256).Hash
            $entries.Add("$relative $hash")
        }
    }
    $sorted = [string[]]$entries.ToArray()
    [Array]::Sort($sorted, [System.StringComparer]::Ordinal)
    $bytes = [System.Text.Encoding]::UTF8.GetBytes(($sorted -join "`n"))
    $sha = [System.Security.Cryptography.SHA256]::Create()
    $digest = [System.BitConverter]::ToString($sha.ComputeHash($bytes)).Replace('-', '')
    return $digest.Substring(0, 12).ToLowerInvariant()
}

function install_cli {
    # Each source version gets its own folder, so the working command stays in
    # place while a new one is built; a half-built folder (no marker, written
    # last) from an interrupted run is removed and built again.
    if (Test-Path -LiteralPath $cliEnv) {
        Remove-Item -LiteralPath $cliEnv -Recurse -Force
    }
    Set-Content -LiteralPath $script:log -Value '' -Encoding UTF8
    $pythonArgs = @()
    if (-not $env:UV_PYTHON) {
        $pythonArgs = @('--python', '>=3.11')
    }
    $rc = run_logged $script:uv (@('venv', '--no-project') + $pythonArgs + @($cliEnv))
    check_interrupt $rc
    if ($rc -ne 0) {
        log_tail
        fail "uv could not create an environment for the geolibre-ml command: it needs Python 3.11 or newer." `
            "Install Python 3.11 or 3.12 (python.org or your package manager), or set UV_PYTHON_DOWNLOADS=automatic to let uv download one."
    }
    $rc = 1
    if (Test-Path -LiteralPath (Join-Path $project 'uv.lock')) {
        # The locked versions: what the project was tested with, and what a
        # warm uv cache (from uv sync) already holds, so this works offline.
        $savedEnv = $env:UV_PROJECT_ENVIRONMENT
        $env:UV_PROJECT_ENVIRONMENT = $cliEnv
        try {
            $rc = run_logged $script:uv @('sync', '--frozen', '--no-dev', '--no-editable',
                '--package', 'geolibre-env', '--project', $project)
        } finally {
            $env:UV_PROJECT_ENVIRONMENT = $savedEnv
        }
        check_interrupt $rc
    }
    if ($rc -ne 0) {
        # A mirror or a wheelhouse (UV_INDEX_URL, UV_FIND_LINKS) serves a resolution, not the lock's URLs.
        $rc = run_logged $script:uv @('pip', 'install', '--python', $cliPython,
            (Join-Path $project 'env-manager'))
        check_interrupt $rc
    }
    if ($rc -ne 0) {
        log_tail
        fail "uv could not install the geolibre-ml command (the lines above say which package is missing)." `
            "Connect to the package index, point UV_INDEX_URL at a mirror or UV_FIND_LINKS at a wheelhouse, then run this script again."
    }
    $script:cliVersion = Invoke-WithTimeout $cli '--version' $CliVersionTimeoutS
    if (-not $script:cliVersion) {
        log_tail
        fail "The geolibre-ml command was installed but does not start." `
            "Security software may block new programs in $($cliDir): allow them, run this script again, and if it still fails run it with --verbose and report the output."
    }
    Set-Content -LiteralPath (Join-Path $cliEnv $CliMarker) -Value '' -Encoding ASCII
    info "$($script:cliVersion) installed in $cliEnv"
}

function link_cli {
    # bin\geolibre-ml points at the current build; replaced by a rename, never half-written.
    New-Item -ItemType Directory -Force -Path $binDir | Out-Null
    $staged = Join-Path $binDir ".geolibre-ml.tmp-$PID"
    if ($onWindows) {
        # %~dp0 is the wrapper's own folder: no user path (spaces, non-ASCII
        # letters, code pages) is written into the file.
        $link = Join-Path $binDir 'geolibre-ml.cmd'
        $line = "@`"%~dp0..\cli\env-$fingerprint\Scripts\geolibre-ml.exe`" %*`r`n"
        [System.IO.File]::WriteAllText($staged, $line, [System.Text.Encoding]::ASCII)
        if (Test-Path -LiteralPath $link) {
            [System.IO.File]::Replace($staged, $link, [NullString]::Value)
        } else {
            [System.IO.File]::Move($staged, $link)
        }
    } else {
        $link = Join-Path $binDir 'geolibre-ml'
        Remove-Item -LiteralPath $staged -Force -ErrorAction SilentlyContinue
        New-Item -ItemType SymbolicLink -Path $staged -Target "../cli/env-$fingerprint/bin/geolibre-ml" | Out-Null
        Move-Item -LiteralPath $staged -Destination $link -Force
    }
    foreach ($old in @(Get-ChildItem -LiteralPath $cliDir -Directory -Filter 'env-*')) {
        if ($old.Name -ne "env-$fingerprint") {
            Remove-Item -LiteralPath $old.FullName -Recurse -Force -ErrorAction SilentlyContinue
        }
    }
}

# ---------------------------------------------------------------- steps 3 and 4
# doctor summary (python) begin
$DoctorSummaryPy = @'
import json
import subprocess
import sys

cli, no_weights = sys.argv[1], sys.argv[2] == "1"
proc = subprocess.run(
    [cli, "doctor", "--json"], capture_output=True, text=True, encoding="utf-8", errors="replace"
)
if proc.returncode == 2 and "invalid choice" in proc.stderr:
    # An older geolibre-ml without the doctor: its status is what it can tell.
    sys.stdout.flush()
    subprocess.run([cli, "status"])
    print("Verdict: UNKNOWN. This geolibre-ml has no doctor command; the status above is what it knows.")
    sys.exit(0)
try:
    report = json.loads(proc.stdout)
except ValueError:
    for line in (proc.stderr or proc.stdout).strip().splitlines()[-5:]:
        print("  " + line)
    print(f"Verdict: FAILURE. geolibre-ml doctor gave no report (exit code {proc.returncode}).")
    sys.exit(1)
checks = report.get("checks", [])
for check in checks:
    if check.get("status") != "ok":
        print(f"  {check.get('status', '?').upper():8} {check.get('title')}: {check.get('detail')}")
        if check.get("fix"):
            print(f"           -> {check['fix']}")
failing = {check.get("id") for check in checks if check.get("status") == "failure"}
verdict = str(report.get("verdict", "failure"))
summary = report.get("summary", "")
if verdict == "failure" and no_weights and failing == {"weights"}:
    print(f"Verdict: INCOMPLETE (SAM 3 weights skipped with --no-weights). {summary}")
    sys.exit(0)
print(f"Verdict: {verdict.upper()}. {summary}")
sys.exit(1 if verdict == "failure" else 0)
'@
# doctor summary (python) end

# ---------------------------------------------------------------- main
try {
    $argv = @($args)
    $backend = ''
    $build = ''
    $tokenFile = ''
    $tokenStdin = $false
    $askToken = $false
    $checkpoint = ''
    $noWeights = $false
    $force = $false
    $dryRun = $false
    $assumeYes = $false
    $script:verbose = $false

    # flags:begin (tests/installers compares this list with the .sh's)
    $i = 0
    while ($i -lt $argv.Count) {
        $arg = [string]$argv[$i]
        if ($arg -ceq '--backend') { $backend = need_value $argv $i; $i += 2 }
        elseif ($arg.StartsWith('--backend=')) { $backend = $arg.Substring(10); $i += 1 }
        elseif ($arg -ceq '--build') { $build = need_value $argv $i; $i += 2 }
        elseif ($arg.StartsWith('--build=')) { $build = $arg.Substring(8); $i += 1 }
        elseif ($arg -ceq '--token-file') { $tokenFile = need_value $argv $i; $i += 2 }
        elseif ($arg.StartsWith('--token-file=')) { $tokenFile = $arg.Substring(13); $i += 1 }
        elseif ($arg -ceq '--token-stdin') { $tokenStdin = $true; $i += 1 }
        elseif ($arg -ceq '--ask-token') { $askToken = $true; $i += 1 }
        elseif ($arg -ceq '--checkpoint') { $checkpoint = need_value $argv $i; $i += 2 }
        elseif ($arg.StartsWith('--checkpoint=')) { $checkpoint = $arg.Substring(13); $i += 1 }
        elseif ($arg -ceq '--no-weights') { $noWeights = $true; $i += 1 }
        elseif ($arg -ceq '--force') { $force = $true; $i += 1 }
        elseif ($arg -ceq '--dry-run') { $dryRun = $true; $i += 1 }
        elseif ($arg -ceq '-y' -or $arg -ceq '--yes') { $assumeYes = $true; $i += 1 }
        elseif ($arg -ceq '-v' -or $arg -ceq '--verbose') { $script:verbose = $true; $i += 1 }
        elseif ($arg -ceq '-h' -or $arg -ceq '--help') { usage; finish 0 }
        else { usage_error "unknown option: $arg" }
    }
    # flags:end

    if (@('', 'meta', 'transformers') -notcontains $backend) {
        usage_error "--backend must be meta or transformers, not $backend."
    }
    $tokenSources = @($tokenStdin, $askToken, [bool]$tokenFile) | Where-Object { $_ }
    if (@($tokenSources).Count -gt 1) {
        usage_error "give the token one way only: --token-file, --token-stdin or --ask-token."
    }
    if ($askToken -and $assumeYes) {
        usage_error "--ask-token asks a question, --yes forbids them: use --token-file or HF_TOKEN."
    }

    # Python children print UTF-8, and this script reads and shows it as UTF-8:
    # paths with non-ASCII letters survive any console code page.
    $env:PYTHONUTF8 = '1'
    try {
        $script:savedEncoding = [Console]::OutputEncoding
        [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false
    } catch {
        $script:savedEncoding = $null
    }

    # ------------------------------------------------------------ where things are
    if ($env:GEOLIBRE_ML_PROJECT) {
        $project = absolute $env:GEOLIBRE_ML_PROJECT
    } else {
        $project = Split-Path -Parent $PSScriptRoot
    }
    if (-not (Test-Path -LiteralPath (Join-Path (Join-Path $project 'env-manager') 'pyproject.toml'))) {
        fail "The geolibre-ml project was not found in $project (no env-manager/pyproject.toml)." `
            "Run the script from inside the project folder, or set GEOLIBRE_ML_PROJECT to it."
    }

    # The same folders as platformdirs' user data folder for geolibre-ml (the
    # env manager's Paths), so the app and this script share one installation.
    if ($env:GEOLIBRE_ML_HOME) {
        $dataDir = Join-Path (absolute $env:GEOLIBRE_ML_HOME) 'data'
    } elseif ($onWindows -and $env:LOCALAPPDATA) {
        $dataDir = Join-Path $env:LOCALAPPDATA 'geolibre-ml'
    } elseif (-not $onWindows -and $env:HOME) {
        if ([System.Runtime.InteropServices.RuntimeInformation]::IsOSPlatform([System.Runtime.InteropServices.OSPlatform]::OSX)) {
            $dataDir = Join-Path $env:HOME 'Library/Application Support/geolibre-ml'
        } elseif ($env:XDG_DATA_HOME) {
            $dataDir = Join-Path $env:XDG_DATA_HOME 'geolibre-ml'
        } else {
            $dataDir = Join-Path $env:HOME '.local/share/geolibre-ml'
        }
    } else {
        fail "The user's data folder is unknown (HOME or LOCALAPPDATA is not set)." "Set GEOLIBRE_ML_HOME to a folder for geolibre-ml."
    }
    $cliDir = Join-Path $dataDir 'cli'
    $binDir = Join-Path $dataDir 'bin'
    $script:log = Join-Path $cliDir 'install-cli.log'

    # This computer's Python, never one downloaded by uv: downloads come from
    # GitHub (often blocked), and the plan reports the Python it found. Set
    # UV_PYTHON_DOWNLOADS=automatic to let uv fetch one anyway.
    if (-not $env:UV_PYTHON_DOWNLOADS) {
        $env:UV_PYTHON_DOWNLOADS = 'never'
    }
    # The project's spec (with its constraints file) is the one this script installs.
    $projectSpec = Join-Path (Join-Path $project 'installers') 'model-env.toml'
    if (-not $env:GEOLIBRE_ML_SPEC -and (Test-Path -LiteralPath $projectSpec)) {
        $env:GEOLIBRE_ML_SPEC = $projectSpec
    }
    # An activated virtual environment is not ours to install into.
    Remove-Item Env:VIRTUAL_ENV -ErrorAction SilentlyContinue

    try {
        New-Item -ItemType Directory -Force -Path $cliDir | Out-Null
    } catch {
        fail "Cannot create $cliDir." "Check that you can write to $dataDir, or set GEOLIBRE_ML_HOME."
    }
    # Leftovers of runs that were killed: each run's scratch folder is tmp-PID.
    foreach ($leftover in @(Get-ChildItem -LiteralPath $cliDir -Directory -Filter 'tmp-*')) {
        $holder = 0
        if (-not [int]::TryParse($leftover.Name.Substring(4), [ref]$holder) -or
            -not (Get-Process -Id $holder -ErrorAction SilentlyContinue)) {
            Remove-Item -LiteralPath $leftover.FullName -Recurse -Force -ErrorAction SilentlyContinue
        }
    }
    $script:tmpDir = Join-Path $cliDir "tmp-$PID"
    New-Item -ItemType Directory -Force -Path $script:tmpDir | Out-Null

    say "Installing GeoLibre's SAM 3 model backend into $dataDir"

    step 1 "Finding uv"
    $script:uv = ''
    find_uv

    step 2 "Installing the geolibre-ml command"
    $fingerprint = source_fingerprint
    $cliEnv = Join-Path $cliDir "env-$fingerprint"
    $cli = Join-Path (Join-Path $cliEnv $venvBin) "geolibre-ml$exeSuffix"
    $cliPython = Join-Path (Join-Path $cliEnv $venvBin) "python$exeSuffix"
    $script:cliVersion = $null
    if (Test-Path -LiteralPath (Join-Path $cliEnv $CliMarker)) {
        $script:cliVersion = Invoke-WithTimeout $cli '--version' $CliVersionTimeoutS
    }
    if ($script:cliVersion) {
        info "$($script:cliVersion) is already installed in $cliEnv"
    } else {
        install_cli
    }
    link_cli
    info "Run it later as: $(Join-Path $binDir 'geolibre-ml') (add $binDir to PATH to type just geolibre-ml)"

    step 3 "Installing the model backend"
    $planArgs = @()
    if ($backend) {
        $planArgs += @('--backend', $backend)
    }
    if ($build) {
        $planArgs += @('--build', $build)
    }
    $plan = Invoke-Captured $cli (@('install', '--dry-run') + $planArgs)
    check_interrupt $plan.Code
    if ($dryRun -or $plan.Code -ne 0) {
        say $plan.Text
    } else {
        # What this computer can run, SAM 3 first among it, which sources answered just now,
        # and the plan's warnings (an unreachable Hub, a fallback), before anything is downloaded.
        $inWarnings = $false
        foreach ($line in ($plan.Text -split "`n")) {
            $line = $line.TrimEnd()
            if ($line -match '^  (Machine|PyTorch|SAM 3):') {
                [Console]::Out.WriteLine('      ' + $line.Substring(2))
            } elseif ($line -match '^    .*(answered \(HTTP|did not answer)') {
                [Console]::Out.WriteLine('      ' + $line.Substring(4))
            } elseif ($line -ceq 'Warnings:') {
                $inWarnings = $true
                [Console]::Out.WriteLine('      Warnings:')
                continue
            } elseif ($inWarnings -and $line.StartsWith('  - ')) {
                [Console]::Out.WriteLine('      ' + $line.Substring(2))
                continue
            }
            $inWarnings = $false
        }
    }
    if ($plan.Code -ne 0) {
        fail "The install cannot start on this computer: the plan above lists the problems." `
            "Fix the problems it lists, then run this script again."
    }
    if ($dryRun) {
        say "Dry run: only the geolibre-ml command was installed; the model backend was not."
        finish 0
    }
    if (-not $assumeYes -and -not [Console]::IsInputRedirected -and -not [Console]::IsOutputRedirected) {
        [Console]::Out.Write('Install the model backend now? [Y/n] ')
        $answer = [Console]::In.ReadLine()
        if ($null -eq $answer) {
            $answer = 'n'
        }
        if (@('', 'y', 'Y', 'yes', 'Yes', 'YES') -cnotcontains $answer.Trim()) {
            say "Nothing was installed: run this script again when you are ready."
            finish 0
        }
    }

    $installArgs = @('install', '--wait') + $planArgs
    if ($tokenFile) {
        $installArgs += @('--token-file', $tokenFile)
    }
    if ($tokenStdin) {
        $installArgs += '--token-stdin'
    }
    if ($askToken) {
        $installArgs += '--ask-token'
    }
    if ($checkpoint) {
        $installArgs += @('--checkpoint', $checkpoint)
    }
    if ($noWeights) {
        $installArgs += '--no-weights'
    }
    if ($force) {
        $installArgs += '--force'
    }
    $verboseArgs = @()
    if ($script:verbose) {
        $verboseArgs = @('--verbose')
    }
    # Straight to the console: the progress bar needs it, and --ask-token reads from it.
    $ErrorActionPreference = 'Continue'
    & $cli @verboseArgs @installArgs
    $installRc = $LASTEXITCODE
    $ErrorActionPreference = 'Stop'
    check_interrupt $installRc
    if ($installRc -eq 3) {
        warn "The model environment is installed, but the SAM 3 weights are not (the message above says why)."
        info "To finish: fix what it names, then run this script again (a token: --ask-token or --token-file PATH; weights on disk: --checkpoint PATH)."
    } elseif ($installRc -ne 0) {
        fail "The model backend was not installed (geolibre-ml exit code $installRc): the message above says why." `
            "Do what it says, then run this script again: it resumes where it stopped. For a full report: $(Join-Path $binDir 'geolibre-ml') doctor"
    }

    step 4 "Checking the installation (geolibre-ml doctor)"
    $summaryScript = Join-Path $script:tmpDir 'doctor_summary.py'
    [System.IO.File]::WriteAllText($summaryScript, $DoctorSummaryPy)
    $noWeightsFlag = if ($noWeights) { '1' } else { '0' }
    $ErrorActionPreference = 'Continue'
    & $cliPython $summaryScript $cli $noWeightsFlag
    $doctorRc = $LASTEXITCODE
    $ErrorActionPreference = 'Stop'
    check_interrupt $doctorRc
    if ($installRc -ne 0) {
        finish $installRc
    }
    finish $doctorRc
} catch {
    if ($_.Exception -is [System.Management.Automation.PipelineStoppedException]) {
        throw  # Ctrl-C: the finally block below says what that means
    }
    [Console]::Error.WriteLine('install-model-backend: error: ' + $_.Exception.Message)
    [Console]::Error.WriteLine('  Fix: run it again with --verbose and report the output.')
    $script:Done = $true
    exit 1
} finally {
    # Ctrl-C stops a PowerShell script without running the rest: say what that means.
    if (-not $script:Done) {
        [Console]::Error.WriteLine('')
        [Console]::Error.WriteLine('install-model-backend: error: Interrupted. Nothing half-installed was marked ready.')
        [Console]::Error.WriteLine('  Fix: Run this script again: it resumes where it stopped.')
    }
    if ($script:tmpDir -and (Test-Path -LiteralPath $script:tmpDir)) {
        Remove-Item -LiteralPath $script:tmpDir -Recurse -Force -ErrorAction SilentlyContinue
    }
    if ($null -ne $script:savedEncoding) {
        try { [Console]::OutputEncoding = $script:savedEncoding } catch { }
    }
}
