package healthmgr

import "github.com/kiln-paas/kiln/healthmgr/drift"

// instanceSet holds one app's instances in a slice, so an analysis pass
// copies them in one move, with an index by instance id. Pointers returned
// stay valid only until the set changes.
type instanceSet struct {
	list []drift.Instance
	pos  map[string]int
}

func (s *instanceSet) len() int { return len(s.list) }

// get returns the instance with id, or nil.
func (s *instanceSet) get(id string) *drift.Instance {
	if i, ok := s.pos[id]; ok {
		return &s.list[i]
	}
	return nil
}

// getOrAdd returns the instance with id, adding it (for app) if absent;
// added reports which.
func (s *instanceSet) getOrAdd(app, id string) (in *drift.Instance, added bool) {
	if in := s.get(id); in != nil {
		return in, false
	}
	if s.pos == nil {
		s.pos = make(map[string]int)
	}
	s.pos[id] = len(s.list)
	s.list = append(s.list, drift.Instance{App: app, ID: id})
	return &s.list[len(s.list)-1], true
}

// remove deletes the instance with id; it reports whether there was one.
func (s *instanceSet) remove(id string) bool {
	i, ok := s.pos[id]
	if !ok {
		return false
	}
	last := len(s.list) - 1
	if i != last {
		s.list[i] = s.list[last]
		s.pos[s.list[i].ID] = i
	}
	s.list[last] = drift.Instance{}
	s.list = s.list[:last]
	delete(s.pos, id)
	return true
}

// removeIf deletes the instances for which drop is true, calling it once
// per instance in order.
func (s *instanceSet) removeIf(drop func(*drift.Instance) bool) {
	kept := 0
	for i := range s.list {
		if drop(&s.list[i]) {
			delete(s.pos, s.list[i].ID)
			continue
		}
		if kept != i { // only instances that move are re-indexed
			s.list[kept] = s.list[i]
			s.pos[s.list[kept].ID] = kept
		}
		kept++
	}
	clear(s.list[kept:])
	s.list = s.list[:kept]
}
