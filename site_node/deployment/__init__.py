"""Running a site's node across hospitals: TLS checks, the SuperNode, its warm launcher."""
