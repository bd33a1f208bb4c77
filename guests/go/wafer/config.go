package wafer

// Config returns the config value or secret called name. It needs the
// function's `config` or `secrets` grant; a name that is neither gives an error
// with code [CodeNotFound] (see [IsNotFound]).
func Config(name string) (string, error) {
	value, err := HostCall("config", "get", []byte(name))
	if err != nil {
		return "", err
	}
	return string(value), nil
}
