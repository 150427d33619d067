"""kalab.lab: the embedded lab, its data plane, images, faults and supervisor."""
