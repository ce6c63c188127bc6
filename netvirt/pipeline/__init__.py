"""The pipeline's shared vocabulary: tables and their declared stages, the records that
desired state is made of (flows, groups, meters, OVSDB rows), canonical cookies, and the
register and metadata layout.

Compilers (overlay/, nfv/, qos/), the reconciler, the OpenFlow codec and the simulator all
import this package; it imports none of them (an import-linter contract keeps it so)."""
