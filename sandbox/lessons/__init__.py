"""Workshop lessons: files under ``lessons/`` (:mod:`.model`), checks that confirm each step
(:mod:`.checks`), and where a learner is (:mod:`.progress`)."""
