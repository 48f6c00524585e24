-- ok
SELECT race FROM pums GROUP BY race
