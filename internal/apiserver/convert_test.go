package apiserver

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// fill sets every field of v, recursively, to a non-zero value, so a field
// a conversion forgets shows up as a difference.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint64:
		v.SetUint(7)
	case reflect.Float64:
		v.SetFloat(1.5)
	}
}

func filled[T any]() *T {
	var x T
	fill(reflect.ValueOf(&x).Elem())
	return &x
}

// TestConversionsKeepEveryField fails when a field is added to a model type
// the API shows and the conversion to the wire type is not told.
func TestConversionsKeepEveryField(t *testing.T) {
	same := func(name string, domain, wire any) {
		t.Helper()
		d, err := json.Marshal(domain)
		require.NoError(t, err)
		w, err := json.Marshal(wire)
		require.NoError(t, err)
		require.JSONEq(t, string(d), string(w), name)
	}
	inv := filled[model.Inventory]()
	same("inventory", inv, inventoryToAPI(inv))
	img := filled[model.Image]()
	same("image", img, imageToAPI(img))
	hints := filled[model.RootDeviceHints]()
	same("root device hints", hints, rootDeviceToAPI(hints))
	require.Equal(t, hints, rootDeviceFromAPI(rootDeviceToAPI(hints)))
	ev := filled[model.Event]()
	same("event", ev, eventToAPI(*ev))
}

// TestClusterConversionKeepsRolesAndRollout: the API shows a cluster's
// roles, rollout and members as the model holds them.
func TestClusterConversionKeepsRolesAndRollout(t *testing.T) {
	c := filled[model.Cluster]()
	out := clusterToAPI(c, nil)
	roles, err := json.Marshal(c.Roles)
	require.NoError(t, err)
	outRoles, err := json.Marshal(out.Roles)
	require.NoError(t, err)
	require.JSONEq(t, string(roles), string(outRoles))
	require.Equal(t, c.Rollout.MaxUnavailable, out.Rollout.MaxUnavailable)
	require.Len(t, out.Members, len(c.Members))
	for i, m := range c.Members {
		require.Equal(t, m.Machine, out.Members[i].Machine)
		require.Equal(t, m.Role, out.Members[i].Role)
	}
}
