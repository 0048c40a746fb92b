package spec

// RoleType is a role's type (placeholder until the named type lands).
type RoleType = string
