// Package api is Lunway's management API: HTTP/JSON under the versioned
// prefix /v1, served by the daemon on a Unix socket (mode 0600) and
// optionally on TCP with TLS and a bearer token, and the Client the
// `lunway` CLI uses.
//
// The package holds the wire types, the request decoding and routing
// (Handler), the listeners (ListenUnix, ListenTLS) and the Client. The
// daemon implements Backend: reads are consistent snapshots of its state,
// and every change goes through Backend.Change, which applies a mutation
// of the configuration live and saves the file, or leaves both as they
// were.
//
// Request bodies use the field names of the configuration file
// (docs/CONFIG.md): a LUN is added with the JSON form of a `luns[]` entry,
// a target with that of a `targets[]` entry. Decoding is strict: unknown
// fields, wrong types, negative numbers where none make sense, and bodies
// over MaxBodyBytes are refused with 4xx and a JSON Error that names the
// field, e.g. {"error": "...", "field": "backend.store.type"}.
//
// Routes (all under /v1):
//
//	GET    /status                                   daemon status
//	GET    /health                                   per LUN and per backend health
//	GET    /config                                   the configuration (secrets redacted)
//	GET    /targets                                  targets with their LUNs
//	POST   /targets                                  add a target (a targets[] entry)
//	GET    /targets/{target}
//	PATCH  /targets/{target}                         alias, portal_groups
//	DELETE /targets/{target}
//	GET    /targets/{target}/luns
//	POST   /targets/{target}/luns                    add a LUN (a luns[] entry)
//	GET    /targets/{target}/luns/{lun}
//	DELETE /targets/{target}/luns/{lun}              the backing data is kept
//	POST   /targets/{target}/luns/{lun}/resize       {"size": "20GiB"}
//	GET    /targets/{target}/luns/{lun}/snapshots    blockmap LUNs
//	POST   /targets/{target}/luns/{lun}/snapshots    {"name": "before-upgrade"}
//	DELETE /targets/{target}/luns/{lun}/snapshots/{snapshot}
//	POST   /targets/{target}/luns/{lun}/clone        {"snapshot", "volume", "target", "lun"}
//	GET    /targets/{target}/acl
//	PUT    /targets/{target}/acl                     {"initiators": [...], "networks": [...]}
//	POST   /targets/{target}/acl/initiators          {"initiator": "iqn..."}
//	DELETE /targets/{target}/acl/initiators/{initiator}
//	POST   /targets/{target}/acl/networks            {"network": "10.0.0.0/8"}
//	DELETE /targets/{target}/acl/networks?network=10.0.0.0/8
//	GET    /targets/{target}/chap
//	PUT    /targets/{target}/chap                    a chap section
//	DELETE /targets/{target}/chap
//	GET    /portal-groups
//	POST   /portal-groups                            a portal_groups[] entry
//	GET    /portal-groups/{tag}
//	PATCH  /portal-groups/{tag}                      {"alua_state": "standby"}
//	DELETE /portal-groups/{tag}
//	POST   /portal-groups/{tag}/listen               {"address": "0.0.0.0:3261"}
//	DELETE /portal-groups/{tag}/listen/{address}
//	GET    /sessions
//	DELETE /sessions/{id}                            drop a session
package api
