-- ok
/* income by race */ SELECT race, SUM(income) /* total */ AS total FROM pums GROUP BY race;
