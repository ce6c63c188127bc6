"""QoS: tc records and the QoS compiler (tc objects and OpenFlow meters) come here."""
