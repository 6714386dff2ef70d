// Command pumba-standin stands in for Pumba 1.1.7 (ghcr.io/alexei-led/pumba)
// and for its nettools image where neither can be pulled. NOT Pumba: it
// was compared with real Pumba 1.1.7, built from its source, argv by argv
// (test/standins/pumba/README.md has the table and the commands; standin_test.go
// holds it to that table).
//
// As Pumba it takes Pumba's netem and iptables commands with Pumba's
// grammar — the same urfave/cli v1 parser, the same global, command and
// subcommand flags with their aliases and defaults, flags after container
// names, names, "re2:" patterns, --label, --random, --limit, --interval,
// --dry-run — and Pumba's validation, messages and exit codes (1 for a
// refused value, 3 for an unknown command). Then:
//
//   - netem: it does what Pumba does, for real: for each target a sidecar
//     of --tc-image (entrypoint tail -f /dev/null, NET_ADMIN, the target's
//     network namespace) in which each tc command (tc qdisc add dev eth0
//     root netem ...) is run by exec, exit code checked; it holds for the
//     duration or until SIGTERM, then deletes the qdisc the same way. On a
//     kernel without netem the add fails and so does the command (exit 1),
//     as real Pumba's does.
//   - iptables loss: it does what Pumba does, for real: for each target a
//     sidecar of --iptables-image (entrypoint tail -f /dev/null, NET_ADMIN,
//     the target's network namespace) in which each rule is run by exec,
//     exit code checked; it holds, then deletes the rules the same way.
//     With a real nettools image (e2e builds one from Debian's iptables)
//     packets are really dropped.
//
// Run as "tail" (the nettools image's ENTRYPOINT tail -f /dev/null) it
// idles until killed. Run as "tc" or "iptables" (symlinks) it plays the
// nettools tools: it prints the command and succeeds, or with
// PUMBA_STANDIN_TOOLS=hang never returns (a test's hanging cleanup).
//
// Pumba's other commands (kill, pause, stop, stress, ...) are not
// emulated: the platform runs them through the Docker API itself.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	args := os.Args[1:]
	// The tools' roles go by the name it runs under only: "pumba iptables
	// ..." is Pumba's iptables command.
	switch name := filepath.Base(os.Args[0]); name {
	case "tail":
		idle()
	case "tc", "iptables":
		if os.Getenv("PUMBA_STANDIN_TOOLS") == "hang" {
			idle()
		}
		fmt.Println("nettools stand-in:", name, strings.Join(args, " "))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	app := newApp(ctx, func() (runtime, error) { return newDockerRuntime() }, os.Stdout)
	if err := app.Run(append([]string{"pumba"}, args...)); err != nil {
		// Pumba ends with logrus' log.Fatal(err): exit 1.
		fmt.Fprintf(os.Stderr, "level=fatal msg=%q\n", err.Error())
		os.Exit(1)
	}
}

// idle plays "tail -f /dev/null": nothing until a signal ends the process
// (a sidecar is removed with SIGKILL).
func idle() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
	os.Exit(0)
}
