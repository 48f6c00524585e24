-- fail: reserved_name
SELECT race, COUNT(*) AS __units_0 FROM pums GROUP BY race
