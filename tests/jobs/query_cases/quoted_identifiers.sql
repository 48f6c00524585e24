-- ok
SELECT "race", COUNT(*) AS "N" FROM "pums" GROUP BY "race"
