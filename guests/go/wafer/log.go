package wafer

// Level is a log level: the operation of the log namespace.
type Level string

// The log levels. Lines land in `wafer logs NAME`, prefixed with [level] except
// for info.
const (
	LevelDebug Level = "debug"
	LevelInfo  Level = "info"
	LevelWarn  Level = "warn"
	LevelError Level = "error"
)

// Log writes msg to the function's log at level. Logging is always granted, so
// an error here means a bad level or no host.
func Log(level Level, msg string) error {
	_, err := HostCall("log", string(level), []byte(msg))
	return err
}

// LogDebug logs msg at [LevelDebug], ignoring errors.
func LogDebug(msg string) { _ = Log(LevelDebug, msg) }

// LogInfo logs msg at [LevelInfo], ignoring errors.
func LogInfo(msg string) { _ = Log(LevelInfo, msg) }

// LogWarn logs msg at [LevelWarn], ignoring errors.
func LogWarn(msg string) { _ = Log(LevelWarn, msg) }

// LogError logs msg at [LevelError], ignoring errors.
func LogError(msg string) { _ = Log(LevelError, msg) }
