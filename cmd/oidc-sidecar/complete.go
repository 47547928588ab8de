package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/scope"
)

// Shell completion of flag values ("oidc-sidecar completion bash|zsh|fish"
// writes the script; cobra's hidden __complete command answers it).

// completeWords completes one value from words.
func completeWords(words ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp)
}

// completeList completes the last item of a comma-separated list from
// words, keeping the items already typed ("WORKSPACE,EXEC" → "WORKSPACE,EXECUTION_RUN").
func completeList(words func() []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		done, last := "", toComplete
		if i := strings.LastIndexByte(toComplete, ','); i >= 0 {
			done, last = toComplete[:i+1], toComplete[i+1:]
		}
		typed := map[string]bool{}
		for _, w := range strings.Split(done, ",") {
			typed[w] = true
		}
		var out []cobra.Completion
		for _, w := range words() {
			if !typed[w] && strings.HasPrefix(w, strings.ToUpper(last)) {
				out = append(out, done+w)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	}
}

// completeProviderIDs completes --provider with the IDs in the file the
// command's --providers flag names, each with its name as description.
func completeProviderIDs(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	path, _ := cmd.Flags().GetString("providers")
	f, err := provider.Load(path)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	for _, p := range f.Providers {
		if strings.HasPrefix(string(p.ID), toComplete) {
			out = append(out, cobra.CompletionWithDesc(string(p.ID), p.Name))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func providerTypes() []string {
	var out []string
	for _, t := range provider.Types() {
		out = append(out, string(t))
	}
	return out
}

var lifetimeWords = []string{"10m", "30m", "1h", "1h30m", "3h", "8h"}

// yamlFile restricts a flag's file completion to YAML files.
func yamlFile(cmd *cobra.Command, flag string) { _ = cmd.MarkFlagFilename(flag, "yaml", "yml") }

var completeScopes = completeList(scope.All)
