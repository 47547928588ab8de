package main

import (
	"encoding/json"
	"io"

	"github.com/spf13/cobra"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// formatFlag adds --format pretty|json to cmd.
func formatFlag(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVar(format, "format", "pretty", "output format: pretty | json")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"pretty", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

// jsonFormat checks a --format value and tells whether it is json.
func jsonFormat(format string) (bool, error) {
	switch format {
	case "pretty", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usagef("--format %q: use pretty or json", format)
}
