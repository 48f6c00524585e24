-- ok
SELECT s.race, COUNT(DISTINCT s.pid) AS persons FROM (SELECT race, pid FROM pums WHERE sex = 0) AS s GROUP BY s.race
