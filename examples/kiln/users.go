package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/controller/client"
)

func (k *cli) userCommands() []*cobra.Command {
	var email, password string
	var force bool

	register := &cobra.Command{
		Use:     "register [EMAIL]",
		Aliases: []string{"add-user"},
		Short:   "Create a user (and log in as it if not logged in)",
		Args:    maxArgs(1),
		RunE: k.withClient(false, func(cmd *cobra.Command, cl *client.Client, args []string) error {
			email, password, err := k.credentials(args, email, password)
			if err != nil {
				return err
			}
			if err := cl.Register(cmd.Context(), email, password); err != nil {
				return err
			}
			k.say("Created user %s\n", email)
			if k.cfg.Auth[k.currentTarget()].Token != "" {
				return nil
			}
			return k.login(cmd.Context(), cl, email, password)
		}),
	}
	login := &cobra.Command{
		Use:   "login [EMAIL]",
		Short: "Log in to the target and remember the token",
		Args:  maxArgs(1),
		RunE: k.withClient(false, func(cmd *cobra.Command, cl *client.Client, args []string) error {
			email, password, err := k.credentials(args, email, password)
			if err != nil {
				return err
			}
			return k.login(cmd.Context(), cl, email, password)
		}),
	}
	for _, c := range []*cobra.Command{register, login} {
		c.Flags().StringVar(&email, "email", "", "the user's email (or the EMAIL argument)")
		c.Flags().StringVar(&password, "password", "", "the user's password (asked on a terminal when absent)")
	}
	logout := &cobra.Command{
		Use:   "logout",
		Short: "Revoke and forget the target's token",
		Args:  noArgs,
		RunE: k.action(func(cmd *cobra.Command, _ []string) error {
			t := k.currentTarget()
			a, ok := k.cfg.Auth[t]
			if !ok {
				k.say("Not logged in to %s\n", t)
				return nil
			}
			if cl, err := k.client(true); err == nil {
				// The token is forgotten even if the controller cannot
				// revoke it (it may have expired already).
				if err := cl.Logout(cmd.Context(), a.User); err != nil {
					fmt.Fprintf(k.err, "kiln: warning: revoke token: %v\n", err)
				}
			}
			delete(k.cfg.Auth, t)
			if err := k.cfg.save(k.cfgDir); err != nil {
				return err
			}
			k.say("Logged out of %s\n", t)
			return nil
		}),
	}
	passwd := &cobra.Command{
		Use:   "passwd",
		Short: "Change the logged-in user's password",
		Args:  noArgs,
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, _ []string) error {
			pw, err := k.ask(password, "New password", "--password", true)
			if err != nil {
				return err
			}
			if err := cl.ChangePassword(cmd.Context(), k.user(), pw); err != nil {
				return err
			}
			k.say("Changed the password of %s\n", k.user())
			return nil
		}),
	}
	passwd.Flags().StringVar(&password, "password", "", "the new password (asked on a terminal when absent)")
	user := &cobra.Command{
		Use:     "user",
		Aliases: []string{"whoami"},
		Short:   "Show the logged-in user",
		Args:    noArgs,
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, _ []string) error {
			u, err := cl.User(cmd.Context(), k.user())
			if err != nil {
				return err
			}
			if k.json {
				return printJSON(k.out, u)
			}
			role := ""
			if u.Admin {
				role = " (admin)"
			}
			fmt.Fprintf(k.out, "%s%s\n", u.Email, role)
			return nil
		}),
	}
	users := &cobra.Command{
		Use:   "users",
		Short: "List users (admin)",
		Args:  noArgs,
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, _ []string) error {
			us, err := cl.Users(cmd.Context())
			if err != nil {
				return err
			}
			if us == nil {
				us = []client.User{}
			}
			if k.json {
				return printJSON(k.out, us)
			}
			rows := make([][]string, 0, len(us))
			for _, u := range us {
				names := ""
				for i, a := range u.Apps {
					if i > 0 {
						names += ","
					}
					names += a.Name
				}
				rows = append(rows, []string{u.Email, fmt.Sprint(u.Admin), names})
			}
			table(k.out, []string{"EMAIL", "ADMIN", "APPS"}, rows)
			return nil
		}),
	}
	deleteUser := &cobra.Command{
		Use:   "delete-user EMAIL",
		Short: "Delete a user with their apps and services (admin)",
		Args:  exactArgs(1),
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, args []string) error {
			if err := k.confirm(force, "Delete user "+args[0]+" with all their apps and services?"); err != nil {
				return err
			}
			return k.deleteUser(cmd.Context(), cl, args[0])
		}),
	}
	deleteUser.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return []*cobra.Command{register, login, logout, passwd, user, users, deleteUser}
}

// credentials resolves the email (argument, flag or prompt) and password
// (flag or prompt).
func (k *cli) credentials(args []string, email, password string) (string, string, error) {
	if len(args) == 1 {
		if email != "" && email != args[0] {
			return "", "", usagef("EMAIL argument and --email differ")
		}
		email = args[0]
	}
	email, err := k.ask(email, "Email", "--email", false)
	if err != nil {
		return "", "", err
	}
	password, err = k.ask(password, "Password", "--password", true)
	return email, password, err
}

// login logs in and stores the token for the current target.
func (k *cli) login(ctx context.Context, cl *client.Client, email, password string) error {
	tok, err := cl.Login(ctx, email, password)
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == 403 {
		// An unknown user is a failed login, not a missing thing.
		return withCode(exitForbidden, fmt.Errorf("login as %s: %w", email, err))
	}
	if err != nil {
		return err
	}
	if k.cfg.Auth == nil {
		k.cfg.Auth = map[string]auth{}
	}
	t := k.currentTarget()
	k.cfg.Auth[t] = auth{User: email, Token: tok}
	if k.cfg.Target == "" {
		k.cfg.Target = t
	}
	if err := k.cfg.save(k.cfgDir); err != nil {
		return err
	}
	k.say("Logged in to %s as %s\n", t, email)
	return nil
}

// deleteUser removes the user's apps and services acting as them, as the
// original CLI did, then the user.
func (k *cli) deleteUser(ctx context.Context, cl *client.Client, email string) error {
	as := cl.AsUser(email)
	apps, err := as.Apps(ctx)
	if err != nil && !isNotFound(err) {
		return err
	}
	for _, a := range apps {
		if err := as.DeleteApp(ctx, a.Name); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete app %s: %w", a.Name, err)
		}
		k.say("Deleted app %s\n", a.Name)
	}
	svcs, err := as.Services(ctx)
	if err != nil && !isNotFound(err) {
		return err
	}
	for _, s := range svcs {
		if err := as.DeleteService(ctx, s.Name); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete service %s: %w", s.Name, err)
		}
		k.say("Deleted service %s\n", s.Name)
	}
	if err := cl.DeleteUser(ctx, email); err != nil {
		return err
	}
	k.say("Deleted user %s\n", email)
	return nil
}

// isNotFound reports whether err means the thing does not exist.
func isNotFound(err error) bool {
	var ce *client.Error
	return errors.Is(err, errNotFound) || (errors.As(err, &ce) && classify(ce) == exitNotFound)
}
