package provision

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestOneStatusWritePath holds the package to one machine write path:
// writeStatus, where the state table and the write lock are applied, is
// the only caller of the store's machine updates outside tests.
func TestOneStatusWritePath(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	calls := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "UpdateMachine" && sel.Sel.Name != "UpdateMachineRecording") {
					return true
				}
				calls++
				if fn.Name.Name != "writeStatus" {
					t.Errorf("%s: %s calls %s; write machines through writeStatus", fset.Position(call.Pos()), fn.Name.Name, sel.Sel.Name)
				}
				return true
			})
		}
	}
	if calls == 0 {
		t.Error("no store machine update found: writeStatus was renamed or moved, update this test")
	}
}
