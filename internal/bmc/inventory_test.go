package bmc

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stmcginnis/gofish/schemas"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// captureFigures are a capture's inventory figures, worked out by reading its
// JSON files (see each case's comment), not by running the code.
type captureFigures struct {
	cpus, cores, threads int
	cpuModel             string
	gpus, accelerators   int
	accelModel           string
	memoryGiB            float64
	nics                 int
	disks                int
	rotational           int        // disks that spin
	firstDisk            model.Disk // zero when there is no disk
	bootMode             string
	bootModes            []string
}

// TestCaptureInventory reads every vendor capture through the mock BMC and
// checks the figures its files state.
func TestCaptureInventory(t *testing.T) {
	tests := []struct {
		capture string
		want    captureFigures
	}{
		{
			// Processors: CPU1 (8 cores, 16 threads), CPU2 Absent, FPGA1
			// (Stratix 10); the summary's Count 2 includes the empty socket.
			// Memory: 3 x 32768 MiB present, summary 96. NICs: VLAN1 and
			// ToManager are not host ports. No Storage; SimpleStorage has
			// bays 1-2 present (8 TB, 4 TB), 3-4 Absent, no media type. The
			// GraphicsController GPU1 is a display adapter, not a processor.
			capture: "dmtf-public-rackmount1",
			want: captureFigures{cpus: 1, cores: 8, threads: 16, cpuModel: "Multi-Core Intel(R) Xeon(R) processor 7xxx Series",
				accelerators: 1, accelModel: "Stratix 10", memoryGiB: 96, nics: 2, disks: 2,
				firstDisk: model.Disk{Name: "SATA Bay 1", Model: "3000GT8", SizeGiB: 7450.58}, bootMode: "uefi"},
		},
		{
			// Processors 1 and 2: 12 cores, 24 threads each. 4 x 32768 MiB
			// DIMMs, summary 128. Storage collection empty (the disk is only
			// in the OEM SmartStorage tree), no SimpleStorage link.
			capture: "hpegen10",
			want: captureFigures{cpus: 2, cores: 24, threads: 48, cpuModel: "Intel(R) Xeon(R) Silver 4116 CPU @ 2.10GHz",
				memoryGiB: 128, nics: 2, bootMode: "uefi"},
		},
		{
			// Summary Count 20 (threads); Processors 1 and 2: E5-2630 v4,
			// 10 cores and 20 threads each. 8 x 16384 MiB. No storage links,
			// no BootSourceOverrideMode.
			capture: "supermicroX10",
			want: captureFigures{cpus: 2, cores: 20, threads: 40, cpuModel: "Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz",
				memoryGiB: 128, nics: 2},
		},
		{
			// No Processors, Memory or Storage subtree: the summary (Count 1,
			// its placeholder model, 1024 GiB) is all there is. One NIC, eth0.
			capture: "quantaD42A-2U",
			want: captureFigures{cpus: 1, cpuModel: "Available for assignment", memoryGiB: 1024, nics: 1,
				bootMode: "legacy", bootModes: []string{"legacy", "uefi"}},
		},
		{
			// Only the system document: summary Count 2, LogicalProcessorCount
			// 32 (no CoreCount), 384 GiB; no NIC or storage subtree.
			capture: "dellfish-r630",
			want: captureFigures{cpus: 2, threads: 32, cpuModel: "Intel(R) Xeon(R) CPU E5-2630L v3 @ 1.80GHz",
				memoryGiB: 384, bootMode: "uefi"},
		},
		{
			// Processors 1 and 2: EPYC 7702, 64 cores and 128 threads each,
			// model padded with spaces. Summary 244 GiB (16 x 15625 MiB).
			// EthernetInterfaces 1-3, where Lan3 repeats Lan2's MAC. One
			// drive in Storage/1 with no media type.
			capture: "cray-Gigabyte",
			want: captureFigures{cpus: 2, cores: 128, threads: 256, cpuModel: "AMD EPYC 7702 64-Core Processor",
				memoryGiB: 244, nics: 2, disks: 1,
				firstDisk: model.Disk{Name: "SAMSUNG MZ7LH1T9HMLT-00005", Model: "SAMSUNG MZ7LH1T9HMLT-00005",
					Serial: "S455NY0M831393", SizeGiB: 1875.37},
				bootMode: "legacy", bootModes: []string{"legacy", "uefi"}},
		},
		{
			// CPU1 and CPU2: Gold 6248, 20 cores, 20 threads each. 12 x
			// 32768 MiB present of 24 slots. 10 EthernetInterfaces with
			// distinct MACs. Storage MRAID links Drives 9-18: 9-12 SATA SSDs,
			// 13-18 SAS HDDs; the capture's other drive files are null and
			// unlinked. No BootSourceOverrideMode.
			capture: "cisco-ucsc-c240-m5sn",
			want: captureFigures{cpus: 2, cores: 40, threads: 40, cpuModel: "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
				memoryGiB: 384, nics: 10, disks: 10, rotational: 6,
				firstDisk: model.Disk{Name: "SSDSC2KB960G7K - 960GB 2.5 inch Enterprise Value 6G SATA SSD",
					Model: "UCS-SD960G6I1X-EV", Serial: "PHYS746100ZW960CGN", SizeGiB: 894.25, MediaType: "SSD"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.capture, func(t *testing.T) {
			mock := newMockBMC(t, tt.capture, "admin", "vendor-pass")
			srv := httptest.NewServer(mock)
			defer srv.Close()
			m := NewManager(testConfig())
			defer m.Close(testCtx(t))

			inv, err := m.Inventory(testCtx(t), model.BMC{Endpoint: srv.URL, Username: "admin", Password: "vendor-pass"})
			require.NoError(t, err)

			got := captureFigures{cpus: inv.CPUs, cores: inv.CPUCores, threads: inv.CPUThreads, cpuModel: inv.CPUModel,
				gpus: inv.GPUs, accelerators: inv.Accelerators, accelModel: inv.AcceleratorModel, memoryGiB: inv.MemoryGiB,
				nics: len(inv.NICs), disks: len(inv.Disks), bootMode: inv.BootMode, bootModes: inv.BootModes}
			for _, d := range inv.Disks {
				if d.Rotational {
					got.rotational++
				}
			}
			if len(inv.Disks) > 0 {
				got.firstDisk = inv.Disks[0]
			}
			assert.Equal(t, tt.want, got)
			assert.Empty(t, inv.GPUModel, "no capture has a GPU processor")
		})
	}
}

// docBMC serves fixed documents by path and accepts any session, for
// inventories no capture shows.
type docBMC struct {
	docs map[string]string

	mu   sync.Mutex
	gets map[string]int
}

func newDocBMC(system string, docs map[string]string) *docBMC {
	b := &docBMC{gets: map[string]int{}, docs: map[string]string{
		"/redfish/v1": `{"@odata.id":"/redfish/v1","Id":"RootService","Name":"Root","RedfishVersion":"1.15.0",
			"Systems":{"@odata.id":"/redfish/v1/Systems"},"SessionService":{"@odata.id":"/redfish/v1/SessionService"},
			"Links":{"Sessions":{"@odata.id":"/redfish/v1/SessionService/Sessions"}}}`,
		"/redfish/v1/Systems":   `{"@odata.id":"/redfish/v1/Systems","Name":"Systems","Members":[{"@odata.id":"/redfish/v1/Systems/1"}]}`,
		"/redfish/v1/Systems/1": system,
	}}
	for p, d := range docs {
		b.docs[p] = d
	}
	return b
}

func (b *docBMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch r.Method {
	case http.MethodPost:
		w.Header().Set("X-Auth-Token", "tok")
		w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/1")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"@odata.id":"/redfish/v1/SessionService/Sessions/1"}`))
		return
	case http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b.mu.Lock()
	b.gets[p]++
	b.mu.Unlock()
	doc, ok := b.docs[p]
	if !ok {
		redfishErr(w, http.StatusNotFound, "no resource at "+p)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(doc))
}

func (b *docBMC) getsOf(p string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gets[p]
}

const storageSystem = `{"@odata.id":"/redfish/v1/Systems/1","Id":"1","Name":"System","PowerState":"On",
	"Storage":{"@odata.id":"/redfish/v1/Systems/1/Storage"}}`

func storageDocs(links ...string) map[string]string {
	drives := make([]map[string]string, len(links))
	for i, l := range links {
		drives[i] = map[string]string{"@odata.id": l}
	}
	list, _ := json.Marshal(drives)
	return map[string]string{
		"/redfish/v1/Systems/1/Storage":   `{"@odata.id":"/redfish/v1/Systems/1/Storage","Members":[{"@odata.id":"/redfish/v1/Systems/1/Storage/1"}]}`,
		"/redfish/v1/Systems/1/Storage/1": `{"@odata.id":"/redfish/v1/Systems/1/Storage/1","Id":"1","Drives":` + string(list) + `}`,
	}
}

const (
	driveLink = "/redfish/v1/Systems/1/Storage/1/Drives/0"
	driveDoc  = `{"@odata.id":"/redfish/v1/Systems/1/Storage/1/Drives/0","Id":"0","Name":"Disk 0","Model":"ST4000NM000A ",
		"SerialNumber":" WJG0ABCD","CapacityBytes":4000787030016,"RotationSpeedRPM":7200,"Status":{"State":"Enabled"}}`
	wantDisk = "Disk 0"
)

// TestInventoryDuplicateDriveLinks: a BMC that links one drive 32 times
// (some with iLO's trailing slash) has one disk, fetched once.
func TestInventoryDuplicateDriveLinks(t *testing.T) {
	links := make([]string, 32)
	for i := range links {
		links[i] = driveLink
		if i%2 == 1 {
			links[i] += "/"
		}
	}
	docs := storageDocs(links...)
	docs[driveLink] = driveDoc
	bmc := newDocBMC(storageSystem, docs)
	srv := httptest.NewServer(bmc)
	defer srv.Close()
	m := NewManager(testConfig())

	inv, err := m.Inventory(testCtx(t), model.BMC{Endpoint: srv.URL, Username: "u", Password: "p"})
	require.NoError(t, err)
	assert.Equal(t, []model.Disk{{Name: wantDisk, Model: "ST4000NM000A", Serial: "WJG0ABCD", SizeGiB: 3726.02, Rotational: true}}, inv.Disks)
	assert.Equal(t, 1, bmc.getsOf(driveLink))
}

// TestInventorySkipsNonDrives: error bodies served with status 200, empty
// documents, null and failing links are no disks, and each is logged once
// however many inventories run.
func TestInventorySkipsNonDrives(t *testing.T) {
	const base = "/redfish/v1/Systems/1/Storage/1/Drives/"
	docs := storageDocs(driveLink, base+"err", base+"empty", base+"null", base+"gone", base+"annotations")
	docs[driveLink] = driveDoc
	docs[base+"err"] = `{"error":{"code":"Base.1.8.InternalError","message":"The request failed due to an internal service error."}}`
	docs[base+"empty"] = `{}`
	docs[base+"null"] = `null`
	docs[base+"annotations"] = `{"@odata.id":"` + base + `annotations","@odata.type":"#Drive.v1_6_0.Drive"}`
	srv := httptest.NewServer(newDocBMC(storageSystem, docs))
	defer srv.Close()
	var logs bytes.Buffer
	cfg := testConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	m := NewManager(cfg)
	c := model.BMC{Endpoint: srv.URL, Username: "u", Password: "p"}

	for range 3 {
		inv, err := m.Inventory(testCtx(t), c)
		require.NoError(t, err)
		require.Len(t, inv.Disks, 1)
		assert.Equal(t, wantDisk, inv.Disks[0].Name)
	}
	var skipped []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "not a drive") {
			skipped = append(skipped, line)
		}
	}
	require.Len(t, skipped, 5, "one warning per bad link over three inventories:\n%s", logs.String())
	for _, want := range []string{"Base.1.8.InternalError", "empty document", "not a JSON object", "404"} {
		assert.Contains(t, strings.Join(skipped, "\n"), want)
	}
}

// TestInventoryGPUBlade: a blade with one CPU and eight GPUs, whatever its
// summary says, has one CPU with its own model and eight GPUs.
func TestInventoryGPUBlade(t *testing.T) {
	procs := []string{`{"@odata.id":"/redfish/v1/Systems/1/Processors/CPU0"}`}
	docs := map[string]string{
		"/redfish/v1/Systems/1/Processors/CPU0": `{"@odata.id":"/redfish/v1/Systems/1/Processors/CPU0","Id":"CPU0","Name":"CPU0",
			"ProcessorType":"CPU","Model":"AMD EPYC 9454 48-Core Processor","TotalCores":48,"TotalThreads":96,"Status":{"State":"Enabled"}}`,
	}
	for _, id := range []string{"GPU0", "GPU1", "GPU2", "GPU3", "GPU4", "GPU5", "GPU6", "GPU7"} {
		p := "/redfish/v1/Systems/1/Processors/" + id
		procs = append(procs, `{"@odata.id":"`+p+`"}`)
		docs[p] = `{"@odata.id":"` + p + `","Id":"` + id + `","Name":"` + id + `","ProcessorType":"GPU",
			"Model":"NVIDIA H100 80GB HBM3","Status":{"State":"Enabled"}}`
	}
	docs["/redfish/v1/Systems/1/Processors"] = `{"@odata.id":"/redfish/v1/Systems/1/Processors","Members":[` + strings.Join(procs, ",") + `]}`
	tests := []struct {
		name    string
		summary string
	}{
		{"summary counts every processor", `{"Count":9,"Model":"NVIDIA H100 80GB HBM3"}`},
		{"summary empty", `{"Count":0}`},
		{"no summary", `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			system := `{"@odata.id":"/redfish/v1/Systems/1","Id":"1","Name":"Blade","PowerState":"On",
				"ProcessorSummary":` + tt.summary + `,"Processors":{"@odata.id":"/redfish/v1/Systems/1/Processors"}}`
			srv := httptest.NewServer(newDocBMC(system, docs))
			defer srv.Close()

			inv, err := NewManager(testConfig()).Inventory(testCtx(t), model.BMC{Endpoint: srv.URL, Username: "u", Password: "p"})
			require.NoError(t, err)
			assert.Equal(t, 1, inv.CPUs)
			assert.Equal(t, "AMD EPYC 9454 48-Core Processor", inv.CPUModel)
			assert.Equal(t, 48, inv.CPUCores)
			assert.Equal(t, 96, inv.CPUThreads)
			assert.Equal(t, 8, inv.GPUs)
			assert.Equal(t, "NVIDIA H100 80GB HBM3", inv.GPUModel)
		})
	}
}

func TestCountProcessors(t *testing.T) {
	n := func(v uint) *uint { return &v }
	i := func(v int) *int { return &v }
	proc := func(typ schemas.ProcessorType, name string, state schemas.State, cores, threads int) *schemas.Processor {
		p := &schemas.Processor{ProcessorType: typ, Model: name, TotalCores: i(cores), TotalThreads: i(threads)}
		p.Status.State = state
		return p
	}
	summary := schemas.ProcessorSummary{Count: n(2), CoreCount: n(16), LogicalProcessorCount: n(32), Model: " Xeon "}
	tests := []struct {
		name    string
		summary schemas.ProcessorSummary
		procs   []*schemas.Processor
		want    model.Inventory
	}{
		{"no list: the summary", summary, nil,
			model.Inventory{CPUs: 2, CPUModel: "Xeon", CPUCores: 16, CPUThreads: 32}},
		{"list of present CPUs overrides the summary", summary,
			[]*schemas.Processor{proc(schemas.CPUProcessorType, "Xeon Gold", schemas.EnabledState, 10, 20)},
			model.Inventory{CPUs: 1, CPUModel: "Xeon Gold", CPUCores: 10, CPUThreads: 20}},
		{"absent sockets do not count", summary,
			[]*schemas.Processor{proc(schemas.CPUProcessorType, "Xeon Gold", schemas.EnabledState, 10, 20),
				proc(schemas.CPUProcessorType, "", schemas.AbsentState, 0, 0)},
			model.Inventory{CPUs: 1, CPUModel: "Xeon Gold", CPUCores: 10, CPUThreads: 20}},
		{"a list without a present CPU leaves the summary's CPUs", summary,
			[]*schemas.Processor{proc(schemas.GPUProcessorType, "A100", schemas.EnabledState, 0, 0),
				proc(schemas.CPUProcessorType, "", schemas.AbsentState, 0, 0)},
			model.Inventory{CPUs: 2, CPUModel: "Xeon", CPUCores: 16, CPUThreads: 32, GPUs: 1, GPUModel: "A100"}},
		{"untyped processors leave the summary", summary,
			[]*schemas.Processor{proc("", "Xeon Gold", schemas.EnabledState, 10, 20)},
			model.Inventory{CPUs: 2, CPUModel: "Xeon", CPUCores: 16, CPUThreads: 32}},
		{"FPGAs, DSPs and accelerators are accelerators", schemas.ProcessorSummary{},
			[]*schemas.Processor{proc(schemas.CPUProcessorType, "EPYC", schemas.EnabledState, 8, 16),
				proc(schemas.FPGAProcessorType, "Stratix 10", schemas.EnabledState, 0, 0),
				proc(schemas.DSPProcessorType, "C66x", schemas.EnabledState, 0, 0),
				proc(schemas.AcceleratorProcessorType, "Gaudi2", schemas.EnabledState, 0, 0)},
			model.Inventory{CPUs: 1, CPUModel: "EPYC", CPUCores: 8, CPUThreads: 16, Accelerators: 3, AcceleratorModel: "Stratix 10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got model.Inventory
			countProcessors(&got, tt.summary, tt.procs)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestRotational(t *testing.T) {
	rpm := func(v float64) *float64 { return &v }
	tests := []struct {
		media schemas.MediaType
		rpm   *float64
		want  bool
	}{
		{schemas.HDDMediaType, nil, true},
		{schemas.SMRMediaType, nil, true},
		{"", rpm(7200), true},
		{schemas.SSDMediaType, rpm(0), false},
		{schemas.SSDMediaType, nil, false},
		{"", nil, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, rotational(&schemas.Drive{MediaType: tt.media, RotationSpeedRPM: tt.rpm}), "%q rpm %v", tt.media, tt.rpm)
	}
}
