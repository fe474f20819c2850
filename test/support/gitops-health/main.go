// Command gitops-health computes the health that Flux and Argo CD would give Kubernetes objects,
// with the code those tools run: kstatus (sigs.k8s.io/cli-utils pkg/kstatus/status, which
// Flux's fork github.com/fluxcd/cli-utils is based on) and gopher-lua (Argo CD's Lua engine)
// running the health scripts of an argocd-cm ConfigMap.
//
//	gitops-health kstatus            < objects.json   -> [{"status":"Current","message":"..."}]
//	gitops-health argocd argocd.yaml < objects.json   -> [{"status":"Healthy","message":"..."}]
//
// objects.json is a JSON array of objects as the API server returns them.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: gitops-health kstatus | argocd CONFIGMAP.yaml  (objects as a JSON array on stdin)")
	}
	raw, err := io.ReadAll(os.Stdin)
	check(err)
	var items []json.RawMessage
	check(json.Unmarshal(raw, &items))
	objs := make([]*unstructured.Unstructured, 0, len(items))
	for _, it := range items {
		// The API server's JSON decoded as client-go decodes it for Flux and Argo CD: integers
		// become int64, other numbers float64.
		u := &unstructured.Unstructured{}
		check(u.UnmarshalJSON(it))
		objs = append(objs, u)
	}
	var out []result
	switch os.Args[1] {
	case "kstatus":
		for _, u := range objs {
			r, err := status.Compute(u)
			check(err)
			out = append(out, result{Status: r.Status.String(), Message: r.Message})
		}
	case "argocd":
		if len(os.Args) < 3 {
			fail("argocd needs the argocd-cm ConfigMap file")
		}
		scripts := healthScripts(os.Args[2])
		for _, u := range objs {
			out = append(out, argoHealth(u, scripts))
		}
	default:
		fail("unknown mode " + os.Args[1])
	}
	enc := json.NewEncoder(os.Stdout)
	check(enc.Encode(out))
}

// healthScripts reads resource.customizations.health.<group>_<Kind> keys of an argocd-cm
// ConfigMap (Argo CD's per-resource key form) into "group/Kind" -> script.
func healthScripts(file string) map[string]string {
	b, err := os.ReadFile(file)
	check(err)
	var cm struct {
		Data map[string]string `json:"data"`
	}
	check(yaml.Unmarshal(b, &cm))
	const prefix = "resource.customizations.health."
	scripts := map[string]string{}
	for k, v := range cm.Data {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		gk := strings.TrimPrefix(k, prefix)
		i := strings.LastIndex(gk, "_")
		if i < 0 {
			fail("bad key " + k)
		}
		scripts[gk[:i]+"/"+gk[i+1:]] = v
	}
	return scripts
}

// argoHealth follows gitops-engine's GetResourceHealth and Argo CD's ExecuteHealthLua: an
// object being deleted is Progressing ("Pending deletion") before any script runs; otherwise the
// script runs with only the base, package and table libraries (Argo CD opens no string or math
// library for health scripts) and `obj` set to the object converted to Lua tables; a returned
// table is encoded to JSON and read as {status, message}; a status outside Argo CD's set is
// Unknown.
func argoHealth(u *unstructured.Unstructured, scripts map[string]string) result {
	if u.GetDeletionTimestamp() != nil {
		return result{Status: "Progressing", Message: "Pending deletion"}
	}
	gvk := u.GroupVersionKind()
	script, ok := scripts[gvk.Group+"/"+gvk.Kind]
	if !ok {
		fail("no health script for " + gvk.Group + "/" + gvk.Kind)
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		check(l.CallByParam(lua.P{Fn: l.NewFunction(lib.fn), NRet: 0, Protect: true}, lua.LString(lib.name)))
	}
	l.SetGlobal("obj", toLua(l, u.Object))
	if err := l.DoString(script); err != nil {
		return result{Status: "Unknown", Message: err.Error()}
	}
	ret := l.Get(-1)
	if ret.Type() == lua.LTNil {
		return result{}
	}
	if ret.Type() != lua.LTTable {
		return result{Status: "Unknown", Message: "script returned " + ret.Type().String()}
	}
	b, err := luajson.Encode(ret)
	check(err)
	var r result
	check(json.Unmarshal(b, &r))
	switch r.Status {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return r
	}
	return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
}

// toLua converts an unstructured value the way Argo CD's util/lua does: maps to hash tables,
// slices to arrays, every Go number type (int64 from the API server's JSON) to a Lua number,
// json.Number to a string, anything else to nil.
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case json.Number:
		return lua.LString(x)
	case int:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case []any:
		t := l.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(toLua(l, e))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetH(lua.LString(k), toLua(l, e))
		}
		return t
	}
	return lua.LNil
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "gitops-health:", msg)
	os.Exit(2)
}
