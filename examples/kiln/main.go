// Command kiln is the command-line client of the kiln cloud controller: the
// original platform's vmc command set on controller/client, with exit codes
// scripts can rely on, --json on every listing, manifest.yml support, and no
// prompt that could wait on a closed stdin.
//
// Commands:
//
//	target [URL]                 show or set (after checking /info) the controller
//	info                         target, user, usage and limits
//	register|add-user [EMAIL]    create a user (and log in if not logged in)
//	login [EMAIL] / logout       get and store / revoke and forget a token
//	passwd, user, users          change password, show self, list users (admin)
//	delete-user EMAIL            delete a user with their apps and services (admin)
//	apps, app NAME               list apps, show one
//	push [NAME] / update NAME    create or update, upload, stage (log streamed), start
//	start, stop, restart NAME    restart is rolling; start and restart wait for instances
//	delete NAME                  delete an app
//	instances NAME [N|+N|-N]     list or scale instances
//	mem NAME [SIZE]              show or set memory per instance
//	map/unmap NAME URL           add or remove a route
//	stats, crashes, crashlogs    instance usage, crashed instances, their log files
//	logs NAME [--tail|--staging] recent, streamed or staging log lines
//	files NAME [PATH]            list or fetch an instance's files
//	env, env-add, env-del        show or edit an app's environment
//	droplets, rollback NAME      kept droplets; make an older one current again
//	events NAME                  an app's history
//	runtimes|stacks, buildpacks|frameworks
//	services, create-service, delete-service, bind-service, unbind-service,
//	register-broker              service offerings and instances
//	exit-codes                   the table below
//
// Every prompt has a flag (--email, --password, --force); when a value is
// missing and stdin is not a terminal the command fails with exit code 2
// instead of waiting. --target or KILN_TARGET override the stored target
// for one command. The target, and a token and user per target, are kept in
// config.json under KILN_HOME, else the user's config directory + "/kiln".
//
// Exit codes:
//
//	0    success
//	1    any other failure (network, server error, ...)
//	2    usage: bad command line, or a required value missing and no terminal to ask
//	3    not found: the app, service, user, file or droplet does not exist
//	4    not logged in, bad credentials, or not allowed
//	5    conflict: the name or URL is taken, or the resource changed or is in use
//	6    staging the app failed
//	7    the app's instances crashed or did not all start in time
//	8    the account's quota (memory, apps, URIs, services) is exhausted
//	130  interrupted (Ctrl-C) before the command finished
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}
