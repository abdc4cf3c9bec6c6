package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/controller/client"
)

// offering is one row of kiln services' offerings.
type offering struct {
	Vendor      string   `json:"vendor"`
	Version     string   `json:"version"`
	Type        string   `json:"type"`
	Description string   `json:"description"`
	Tiers       []string `json:"tiers"`
}

func (k *cli) serviceCommands() []*cobra.Command {
	var force bool
	svcs := &cobra.Command{
		Use:   "services",
		Short: "List the service offerings and your provisioned services",
		Args:  noArgs,
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, _ []string) error {
			offs, err := k.offerings(cmd.Context(), cl)
			if err != nil {
				return err
			}
			mine, err := cl.Services(cmd.Context())
			if err != nil {
				return err
			}
			if mine == nil {
				mine = []client.Service{}
			}
			sort.Slice(mine, func(i, j int) bool { return mine[i].Name < mine[j].Name })
			if k.json {
				return printJSON(k.out, map[string]any{"offerings": offs, "services": mine})
			}
			fmt.Fprintln(k.out, "Offerings:")
			rows := make([][]string, 0, len(offs))
			for _, o := range offs {
				rows = append(rows, []string{o.Vendor, o.Version, strings.Join(o.Tiers, ","), o.Description})
			}
			table(k.out, []string{"SERVICE", "VERSION", "TIERS", "DESCRIPTION"}, rows)
			fmt.Fprintln(k.out, "\nProvisioned:")
			rows = rows[:0]
			for _, s := range mine {
				rows = append(rows, []string{s.Name, s.Vendor, s.Version, s.Tier})
			}
			table(k.out, []string{"NAME", "SERVICE", "VERSION", "TIER"}, rows)
			return nil
		}),
	}
	var name, tier, version, bind string
	create := &cobra.Command{
		Use:   "create-service SERVICE [NAME]",
		Short: "Provision an instance of a service offering (and optionally bind it)",
		Args:  rangeArgs(1, 2),
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, args []string) error {
			vendor := args[0]
			if len(args) == 2 {
				if name != "" && name != args[1] {
					return usagef("NAME argument and --name differ")
				}
				name = args[1]
			}
			if name == "" {
				name = vendor
			}
			ctx := cmd.Context()
			if err := cl.CreateService(ctx, name, vendor, version, tier); err != nil {
				return err
			}
			k.say("Created service %s (%s)\n", name, vendor)
			if bind == "" {
				return nil
			}
			return k.bind(ctx, cl, name, bind)
		}),
	}
	create.Flags().StringVar(&name, "name", "", "name of the instance (default: the service's name)")
	create.Flags().StringVar(&tier, "tier", "free", "plan (tier) to provision")
	create.Flags().StringVar(&version, "version", "", "service version (default: any)")
	create.Flags().StringVar(&bind, "bind", "", "app to bind the new instance to")
	del := &cobra.Command{
		Use:   "delete-service NAME",
		Short: "Deprovision a service instance",
		Args:  exactArgs(1),
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, args []string) error {
			if _, err := cl.Service(cmd.Context(), args[0]); err != nil {
				return err
			}
			if err := k.confirm(force, "Delete service "+args[0]+"?"); err != nil {
				return err
			}
			if err := cl.DeleteService(cmd.Context(), args[0]); err != nil {
				return err
			}
			k.say("Deleted service %s\n", args[0])
			return nil
		}),
	}
	del.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	bindCmd := &cobra.Command{
		Use:   "bind-service SERVICE APP",
		Short: "Bind a service instance to an app (restarts it if started)",
		Args:  exactArgs(2),
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, args []string) error {
			return k.bind(cmd.Context(), cl, args[0], args[1])
		}),
	}
	unbind := &cobra.Command{
		Use:   "unbind-service SERVICE APP",
		Short: "Unbind a service instance from an app",
		Args:  exactArgs(2),
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, args []string) error {
			ctx := cmd.Context()
			a, err := cl.App(ctx, args[1])
			if err != nil {
				return err
			}
			found := false
			for _, s := range a.Services {
				found = found || s == args[0]
			}
			if !found {
				return fmt.Errorf("%s is not bound to %s: %w", args[0], args[1], errNotFound)
			}
			if err := cl.UnbindService(ctx, args[1], args[0]); err != nil {
				return err
			}
			k.say("Unbound %s from %s\n", args[0], args[1])
			return nil
		}),
	}
	var user, password string
	broker := &cobra.Command{
		Use:   "register-broker NAME URL",
		Short: "Register a service broker (admin)",
		Args:  exactArgs(2),
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, args []string) error {
			if err := cl.RegisterBroker(cmd.Context(), args[0], args[1], user, password); err != nil {
				return err
			}
			k.say("Registered broker %s\n", args[0])
			return nil
		}),
	}
	broker.Flags().StringVar(&user, "username", "", "the broker's basic auth user")
	broker.Flags().StringVar(&password, "password", "", "the broker's basic auth password")
	return []*cobra.Command{svcs, create, del, bindCmd, unbind, broker}
}

// bind binds service to app after checking both exist.
func (k *cli) bind(ctx context.Context, cl *client.Client, service, app string) error {
	if _, err := cl.Service(ctx, service); err != nil {
		return err
	}
	if err := cl.BindService(ctx, app, service); err != nil {
		return err
	}
	k.say("Bound %s to %s\n", service, app)
	return nil
}

// offerings flattens /info/services into rows sorted by vendor.
func (k *cli) offerings(ctx context.Context, cl *client.Client) ([]offering, error) {
	info, err := cl.ServiceOfferings(ctx)
	if err != nil {
		return nil, err
	}
	out := []offering{}
	for _, vendors := range info {
		for _, versions := range vendors {
			for _, o := range versions {
				tiers := make([]string, 0, len(o.Tiers))
				for t := range o.Tiers {
					tiers = append(tiers, t)
				}
				sort.Strings(tiers)
				out = append(out, offering{Vendor: o.Vendor, Version: o.Version, Type: o.Type, Description: o.Description, Tiers: tiers})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Vendor != out[j].Vendor {
			return out[i].Vendor < out[j].Vendor
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}
