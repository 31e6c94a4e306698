<#
.SYNOPSIS
Registers (or removes) the scheduled task that mounts dvfs at logon on a
Windows workstation.

.DESCRIPTION
The task "\dvfs\dvfs-mount" starts at the logon of any member of the
Users group and runs, with that user's own token (only while the user is
logged on, without elevation):

    dvfs.exe mount --cache C:\ProgramData\dvfs\cache X:

so the user's clones and templates appear as drive X:. The mount reads
the server and the token from the environment: DVFS_SERVER for the
machine, DVFS_TOKEN for each user (set below, or by the admin's own
means). Its console window shows its log; Ctrl+C there unmounts after
flushing and syncing the clone changes. A mount ended otherwise (log off,
Stop-ScheduledTask) keeps what a crash keeps: what the VM had synced,
which syncs at the next mount.

Needs WinFsp (winfsp.dev) installed, and dvfs.exe in place. Run as
Administrator, once per workstation:

    powershell -ExecutionPolicy Bypass -File dvfs-logon-task.ps1 -Server https://server:7420

Each user sets their token once (or the admin does, in their profile):

    setx DVFS_TOKEN <the token from: dvfs token create --role user NAME>

or, a directory user, logs in once (the token goes to %AppData%\dvfs\token):

    dvfs.exe login

.PARAMETER Server
The dvfs server's URL, set machine-wide as DVFS_SERVER.

.PARAMETER Drive
The drive letter (or an empty directory) to mount at. Default X:.

.PARAMETER Dvfs
Where dvfs.exe is. Default C:\Program Files\dvfs\dvfs.exe.

.PARAMETER Cache
The workstation's cache directory, shared by its users (templates are
cached once per machine). Default C:\ProgramData\dvfs\cache.

.PARAMETER Unregister
Remove the task instead (the cache stays).
#>
[CmdletBinding()]
param(
	[string]$Server,
	[string]$Drive = "X:",
	[string]$Dvfs = "$env:ProgramFiles\dvfs\dvfs.exe",
	[string]$Cache = "$env:ProgramData\dvfs\cache",
	[switch]$Unregister
)
$ErrorActionPreference = "Stop"
$TaskPath = "\dvfs\"
$TaskName = "dvfs-mount"

if ($Unregister) {
	Unregister-ScheduledTask -TaskPath $TaskPath -TaskName $TaskName -Confirm:$false
	Write-Host "removed the scheduled task $TaskPath$TaskName"
	return
}

if (-not (Test-Path $Dvfs)) { throw "no dvfs.exe at $Dvfs (give -Dvfs)" }
$winfsp = Get-ItemProperty -Path "HKLM:\SOFTWARE\WOW6432Node\WinFsp" -Name InstallDir -ErrorAction SilentlyContinue
if (-not $winfsp) { throw "WinFsp is not installed: install it from winfsp.dev first" }

if ($Server) {
	[Environment]::SetEnvironmentVariable("DVFS_SERVER", $Server, "Machine")
} elseif (-not [Environment]::GetEnvironmentVariable("DVFS_SERVER", "Machine")) {
	throw "give -Server URL: DVFS_SERVER is not set for the machine"
}

# The cache is the machine's, written by whichever user is logged on.
New-Item -ItemType Directory -Force -Path $Cache | Out-Null
& icacls $Cache /grant "*S-1-5-32-545:(OI)(CI)M" | Out-Null # BUILTIN\Users: modify
if ($LASTEXITCODE -ne 0) { throw "icacls $Cache failed" }

$action = New-ScheduledTaskAction -Execute $Dvfs -Argument "mount --cache `"$Cache`" $Drive"
$trigger = New-ScheduledTaskTrigger -AtLogOn
# A group principal: the task runs as the user who logs on, with that
# user's token, only while logged on, without elevation.
$principal = New-ScheduledTaskPrincipal -GroupId "S-1-5-32-545" -RunLevel Limited
$settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
	-ExecutionTimeLimit ([TimeSpan]::Zero) -MultipleInstances IgnoreNew `
	-RestartCount 3 -RestartInterval (New-TimeSpan -Minutes 1)
Register-ScheduledTask -TaskPath $TaskPath -TaskName $TaskName -Action $action -Trigger $trigger `
	-Principal $principal -Settings $settings -Force | Out-Null
Write-Host "registered $TaskPath$TaskName : at each logon, $Dvfs mounts $Drive (cache $Cache)"
